"""Writes and business rules for moderation: compiling policies, recording and resolving
flags, dry-run checks.

Allow-listing from the triage queue: the engine's ``allow`` parameter holds literal
strings, so "dismiss and allow-list" needs the matched text. A flag keeps it
(``Flag.allow_candidate``) only for keyword, regex and prompt-injection findings that are
not redacted, i.e. exactly when the excerpt shows the match verbatim anyway. PII, secrets,
known secrets, redactions and external findings never store the matched value; for them
an operator edits the rule's ``allow`` list by hand.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, ConflictError
from moderation import engine, signals
from moderation.engine.normalize import normalise_literal
from moderation.engine.types import SEVERITIES
from moderation.models import Flag, Policy, Rule

# Finding kinds whose matched text is not sensitive and can go into a rule's allow list.
ALLOW_LISTABLE_KINDS = frozenset({"keyword", "regex", "prompt_injection"})
ALLOW_CANDIDATE_MAX_CHARS = 1000
EXCERPT_CONTEXT = 40
# A max_length or external finding can span the whole text: keep the queue readable.
EXCERPT_MAX_CHARS = 500
# One message with thousands of keyword hits must not flood the triage queue.
MAX_FLAGS_PER_RECORD = 50
DECISIONS = (Flag.Status.DISMISSED, Flag.Status.CONFIRMED, Flag.Status.ESCALATED)
MAX_ADHOC_RULES = 100
# The rule a run falls back to when its policy fails closed (see moderation.runtime).
FAIL_CLOSED_RULE_ID = "builtin:fail_closed"
_RULE_KEYS = {"name", "kind", "params", "stages", "action", "severity"}

_CACHE_SIZE = 64
_cache: OrderedDict[tuple[Any, ...], engine.Policy] = OrderedDict()
_cache_lock = threading.Lock()


def policy_rule_specs(policy: Policy) -> list[engine.RuleSpec]:
    """The active rules of a policy, in order, as engine specs."""
    return [r.to_spec() for r in policy.rules.filter(is_active=True).order_by("order", "id")]


def _secrets_digest(known_secrets: Sequence[str]) -> str:
    # The key must tell policies with different vault values apart without holding the
    # values themselves (the compiled policy does, but only inside its matchers).
    digest = hashlib.sha256()
    for value in sorted(set(known_secrets)):
        digest.update(value.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def policy_compile(policy: Policy, *, known_secrets: Sequence[str] = ()) -> engine.Policy:
    """Compile a stored policy for the engine, cached per (policy id, updated_at, known
    secrets). Rule edits bump ``Policy.updated_at``, so a stale entry is never used by a
    caller holding a freshly loaded ``policy``.

    Raises ``engine.RuleParamsError`` if a stored rule no longer validates.
    """
    key = (policy.pk, policy.updated_at, _secrets_digest(known_secrets))
    with _cache_lock:
        compiled = _cache.get(key)
        if compiled is not None:
            _cache.move_to_end(key)
            return compiled
    # Compiling takes ~1 ms (0.35 s for the first policy of a process): not under the lock.
    compiled = engine.Policy(policy_rule_specs(policy), known_secrets=known_secrets)
    with _cache_lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def policies_warm(*, limit: int = 20) -> int:
    """Compile the policies of active agents, so that a fresh process's first run does
    not build the engine's shared tables (Unicode, phrase sets, secret patterns: ~1 s).
    Returns how many compiled; a policy that no longer validates is left to its run."""
    policies = Policy.objects.filter(agents__is_active=True).distinct().order_by("pk")[:limit]
    compiled = 0
    for policy in policies:
        try:
            policy_compile(policy)
        except engine.RuleParamsError:
            continue
        compiled += 1
    return compiled


def policy_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def rule_pk(finding: engine.Finding) -> int | None:
    """The ``Rule`` row a finding came from; None for built-in rules."""
    return int(finding.rule_id) if finding.rule_id.isdigit() else None


def flag_excerpt(text: str, finding: engine.Finding, findings: Sequence[engine.Finding]) -> str:
    """The redacted context of a finding, capped in length."""
    if finding.rule_id == FAIL_CLOSED_RULE_ID:
        # Moderation did not run on this text, so nothing in it is known to be safe.
        return "[not shown: moderation was unavailable]"
    shown = engine.excerpt(text, finding, findings, context=EXCERPT_CONTEXT)
    if len(shown) > EXCERPT_MAX_CHARS:
        shown = shown[: EXCERPT_MAX_CHARS - 1] + "…"
    return shown


def _allow_candidate(text: str, finding: engine.Finding) -> str:
    if finding.kind not in ALLOW_LISTABLE_KINDS or finding.sensitive:
        return ""
    value = text[finding.start : finding.end]
    return value if len(value) <= ALLOW_CANDIDATE_MAX_CHARS else ""


def flag_build(
    *,
    run_id: Any,
    agent_id: int,
    finding: engine.Finding,
    text: str,
    findings: Sequence[engine.Finding],
) -> Flag:
    """An unsaved flag for one finding. ``findings`` are all findings of ``text`` (so the
    excerpt can hide every sensitive span near this one)."""
    return Flag(
        run_id=run_id,
        agent_id=agent_id,
        rule_id=rule_pk(finding),
        rule_name=finding.rule_name[:100],
        stage=finding.stage,
        kind=finding.kind[:100],
        action=finding.action,
        severity=finding.severity,
        excerpt=flag_excerpt(text, finding, findings),
        allow_candidate=_allow_candidate(text, finding),
    )


def flag_record(
    *,
    run_id: Any,
    agent_id: int,
    finding: engine.Finding,
    text: str,
    findings: Sequence[engine.Finding],
) -> Flag:
    """Store one flag for a ``flag`` or ``block`` finding."""
    if finding.action not in ("flag", "block"):
        raise ValueError("only flag and block findings open triage items")
    flag = flag_build(
        run_id=run_id, agent_id=agent_id, finding=finding, text=text, findings=findings
    )
    if flag.rule_id is not None and not Rule.objects.filter(pk=flag.rule_id).exists():
        flag.rule_id = None  # the rule was deleted after the policy was compiled
    flag.save()
    return flag


def flags_record(
    *,
    run_id: Any,
    agent_id: int,
    text: str,
    findings: Sequence[engine.Finding],
    context: Sequence[engine.Finding] | None = None,
) -> list[Flag]:
    """Store flags for the ``flag`` and ``block`` findings of one text, in one insert
    (at most ``MAX_FLAGS_PER_RECORD``; the block, if any, always among them).

    ``context`` are the findings whose sensitive spans the excerpts hide; by default
    ``findings`` (right for a whole-text scan, which found everything).
    """
    wanted = [f for f in findings if f.action in ("flag", "block")]
    if not wanted:
        return []
    wanted.sort(key=lambda f: (f.action != "block", f.start))
    wanted = wanted[:MAX_FLAGS_PER_RECORD]
    wanted.sort(key=lambda f: f.start)
    ids = {pk for f in wanted if (pk := rule_pk(f)) is not None}
    existing = set(Rule.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
    flags = []
    for finding in wanted:
        flag = flag_build(
            run_id=run_id,
            agent_id=agent_id,
            finding=finding,
            text=text,
            findings=findings if context is None else context,
        )
        if flag.rule_id not in existing:
            flag.rule_id = None  # deleted after the policy was compiled: keep the flag
        flags.append(flag)
    stored = Flag.objects.bulk_create(flags)
    signals.flags_recorded.send(sender=Flag, flags=stored)
    return stored


def flag_event_payloads(flags: Sequence[Flag], *, tool_name: str = "") -> list[dict[str, Any]]:
    """The ``moderation.flagged`` event data for stored flags: what was found where,
    never the matched text or the excerpt (run owners see events; only staff see flags)."""
    payloads = []
    for flag in flags:
        data: dict[str, Any] = {
            "stage": flag.stage,
            "rule": flag.rule_name,
            "action": flag.action,
            "kind": flag.kind,
            "severity": flag.severity,
            "flag": flag.pk,
        }
        if tool_name:
            data["tool"] = tool_name
        payloads.append(data)
    return payloads


def _check_decision(decision: str) -> None:
    if decision not in DECISIONS:
        raise ApplicationError(
            "invalid_decision",
            f"decision must be one of {', '.join(DECISIONS)}.",
            details={"decision": decision},
        )


def _allow_key(value: str) -> str:
    return normalise_literal(value, folded=True).strip()


def rule_allow_list_add(*, rule: Rule, value: str) -> bool:
    """Add a literal to a rule's ``allow`` parameter; False if it was already there.
    The caller holds the rule row locked."""
    params = dict(rule.params or {})
    allow = list(params.get("allow") or [])
    if value in allow:
        return False
    allow.append(value)
    params["allow"] = allow
    try:
        engine.validate_params(rule.kind, params)
    except engine.RuleParamsError as exc:
        raise ApplicationError("allow_list_unavailable", str(exc)) from None
    rule.params = params
    rule.save(update_fields=["params", "updated_at"])
    return True


@transaction.atomic
def flag_resolve(
    *,
    flag: Flag,
    decision: str,
    note: str = "",
    reviewer: AbstractBaseUser,
    allow_list_entry: bool = False,
) -> Flag:
    """Record a reviewer's decision on one flag.

    With ``allow_list_entry`` (only with ``dismissed``), the matched value is added to
    the rule's allow list, so the rule stops reporting it, and the other open flags of
    the same rule for the same value are dismissed too. Only possible for kinds whose
    value the flag may keep (see the module docstring); otherwise a 400
    ``allow_list_unavailable``.
    """
    _check_decision(decision)
    # Lock order: flag, then rule (the only place that locks both).
    locked = Flag.objects.select_for_update().get(pk=flag.pk)
    now = timezone.now()
    if allow_list_entry:
        if decision != Flag.Status.DISMISSED:
            raise ApplicationError(
                "allow_list_unavailable", "Only a dismissed flag can allow-list its value."
            )
        if not locked.allow_candidate or locked.rule_id is None:
            raise ConflictError(
                "allow_list_unavailable",
                "This flag's value cannot be allow-listed from the queue (sensitive kind, "
                "built-in or deleted rule); edit the rule's allow list instead.",
            )
        rule = Rule.objects.select_for_update().get(pk=locked.rule_id)
        rule_allow_list_add(rule=rule, value=locked.allow_candidate)
        # Same comparison as the engine's allow list: normalised and case-folded.
        same = _allow_key(locked.allow_candidate)
        open_flags = (
            Flag.objects.filter(rule_id=rule.pk, status=Flag.Status.OPEN)
            .exclude(pk=locked.pk)
            .exclude(allow_candidate="")
            .values_list("pk", "allow_candidate")
        )
        siblings = [pk for pk, value in open_flags if _allow_key(value) == same]
        Flag.objects.filter(pk__in=siblings).update(
            status=Flag.Status.DISMISSED,
            reviewer=reviewer,
            reviewed_at=now,
            note=f"Allow-listed with flag #{locked.pk}.",
        )
    locked.status = decision
    # django-stubs types the key as User; callers hold request.user's AbstractBaseUser.
    locked.reviewer = reviewer  # type: ignore[assignment]
    locked.reviewed_at = now
    if note:
        locked.note = note
    locked.save(update_fields=["status", "reviewer", "reviewed_at", "note"])
    return locked


def flags_resolve(
    *, flag_ids: Iterable[int], decision: str, reviewer: AbstractBaseUser, note: str = ""
) -> int:
    """The same decision on many flags at once (no allow-listing); returns how many."""
    _check_decision(decision)
    fields: dict[str, Any] = {
        "status": decision,
        "reviewer": reviewer,
        "reviewed_at": timezone.now(),
    }
    if note:
        fields["note"] = note
    return Flag.objects.filter(pk__in=list(flag_ids)).update(**fields)


def adhoc_rules_parse(raw: Any) -> list[engine.RuleSpec]:
    """Rules given inline (check endpoint), validated with one message per bad rule."""
    if not isinstance(raw, list) or not raw:
        raise ApplicationError("invalid_rules", "rules must be a non-empty list of rule objects.")
    if len(raw) > MAX_ADHOC_RULES:
        raise ApplicationError("invalid_rules", f"At most {MAX_ADHOC_RULES} rules.")
    specs: list[engine.RuleSpec] = []
    errors: dict[str, str] = {}
    for index, item in enumerate(raw):
        try:
            specs.append(_adhoc_rule(index, item))
        except engine.RuleParamsError as exc:
            errors[str(index)] = str(exc)
    if errors:
        raise ApplicationError(
            "invalid_rules", "Some rules are not valid; see details.", details={"rules": errors}
        )
    return specs


def _nonempty_str(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise engine.RuleParamsError(f"'{field}' must be a non-empty string")
    return value


def _adhoc_rule(index: int, item: Any) -> engine.RuleSpec:
    if not isinstance(item, dict):
        raise engine.RuleParamsError("a rule must be an object")
    unknown = sorted(set(item) - _RULE_KEYS)
    if unknown:
        raise engine.RuleParamsError(f"unknown field(s) {', '.join(unknown)}")
    name = _nonempty_str("name", item.get("name", f"rule {index + 1}"))
    kind = _nonempty_str("kind", item.get("kind"))
    action = _nonempty_str("action", item.get("action", "flag"))
    stages = item.get("stages", sorted(engine.STAGES))
    severity = item.get("severity", "medium")
    if severity not in SEVERITIES:
        raise engine.RuleParamsError(f"'severity' must be one of {', '.join(SEVERITIES)}")
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise engine.RuleParamsError("'stages' must be a list of stage names")
    spec = engine.RuleSpec(
        id=f"adhoc:{index}",
        name=name,
        kind=kind,
        params=item.get("params") or {},
        stages=frozenset(stages),
        action=action,
        severity=severity,
    )
    engine.validate_rule(spec)
    return spec


def policy_check(
    *, text: str, stage: str, policy: Policy | None = None, rules: Any = None
) -> dict[str, Any]:
    """Dry-run a stored policy or ad-hoc rules on a text. Returns findings (with redacted
    excerpts and offsets, never the matched text), the resulting text and the block.

    External rules are not called here (no vault key is revealed for a dry run); they are
    listed in ``skipped``.
    """
    if policy is not None:
        try:
            compiled = policy_compile(policy)
        except engine.RuleParamsError as exc:
            raise ApplicationError(
                "invalid_policy", f"The policy does not compile: {exc}"
            ) from None
    else:
        compiled = engine.Policy(adhoc_rules_parse(rules))
    result = compiled.scan(text, stage)
    skipped = [r.name for r in compiled.rules if r.kind == "external" and stage in r.stages]
    return {
        "findings": [_finding_data(text, f, result.findings) for f in result.findings],
        "text": result.text,
        "blocked": _finding_data(text, result.blocked, result.findings) if result.blocked else None,
        "skipped": skipped,
    }


def _finding_data(
    text: str, finding: engine.Finding, findings: Sequence[engine.Finding]
) -> dict[str, Any]:
    return {
        "rule": finding.rule_name,
        "rule_id": finding.rule_id,
        "kind": finding.kind,
        "action": finding.action,
        "severity": finding.severity,
        "stage": finding.stage,
        "start": finding.start,
        "end": finding.end,
        "excerpt": flag_excerpt(text, finding, findings),
    }
