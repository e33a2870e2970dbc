"""Writes of moderation policies and their rules (the admin and the API call them)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, ConflictError
from moderation.models import Policy, Rule

POLICY_FIELDS = ("name", "description", "fail_mode")


RULE_FIELDS = ("name", "kind", "params", "stages", "action", "severity", "is_active")


def _validation_messages(exc: Any) -> dict[str, list[str]]:
    return {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}


@transaction.atomic
def policy_save(
    *, policy: Policy, data: dict[str, Any], rules: list[dict[str, Any]] | None = None
) -> Policy:
    """Create or change a policy; with ``rules``, its ordered rule list becomes exactly that.

    Each listed rule is exactly what is given, with defaults for the rest; one with the
    name of an existing rule keeps its id (and its flags' link to it); rules not listed
    are deleted. Every rule is validated by the engine (``Rule.clean``);
    errors come back per rule index and field, with the engine's messages.
    """
    from django.core.exceptions import ValidationError

    for field in data:
        if field not in POLICY_FIELDS:
            raise ValueError(f"not an editable policy field: {field}")
        setattr(policy, field, data[field])
    try:
        policy.full_clean()
    except ValidationError as exc:
        raise ApplicationError(
            "invalid_request",
            "The request is not valid; see details.",
            details=_validation_messages(exc),
        ) from None
    policy.save()
    if rules is None:
        return policy
    existing = {r.name: r for r in policy.rules.select_for_update()}
    errors: dict[str, Any] = {}
    seen: set[str] = set()
    keep: list[Rule] = []
    for index, item in enumerate(rules):
        # A listed rule is exactly what is given (defaults for the rest); one named as
        # before keeps its row, so its flags stay linked to it.
        rule = Rule(policy=policy, order=index, **{f: item[f] for f in RULE_FIELDS if f in item})
        if rule.name in existing:
            rule.pk = existing[rule.name].pk
        if rule.name in seen:
            errors[str(index)] = {"name": ["Another rule of this policy has this name."]}
            continue
        seen.add(rule.name)
        try:
            rule.full_clean(exclude=["policy"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors[str(index)] = _validation_messages(exc)
        keep.append(rule)
    if errors:
        raise ApplicationError(
            "invalid_request", "Some rules are not valid; see details.", details={"rules": errors}
        )
    policy.rules.exclude(pk__in=[r.pk for r in keep if r.pk is not None]).delete()
    for rule in keep:
        rule.save()
    policy.refresh_from_db()
    return policy


def policy_delete(*, policy: Policy) -> None:
    """Delete a policy no agent uses: an agent losing its policy would run unmoderated."""
    slugs = list(policy.agents.order_by("slug").values_list("slug", flat=True)[:20])
    if slugs:
        raise ConflictError(
            "policy_in_use",
            f"Policy '{policy.name}' is used by agents: {', '.join(slugs)}.",
            details={"agents": slugs},
        )
    policy.delete()


@transaction.atomic
def policy_rules_renumber(*, policy: Policy) -> bool:
    """Give a policy's rules sequential orders (0, 1, ...) when two of them share one.

    Rules keep their relative order (by order, then id); with no collision nothing is
    written. Returns whether the rules were renumbered.
    """
    rules = list(policy.rules.select_for_update().order_by("order", "id"))
    orders = [r.order for r in rules]
    if len(set(orders)) == len(orders):
        return False
    for index, rule in enumerate(rules):
        rule.order = index
    Rule.objects.bulk_update(rules, ["order"])
    # bulk_update sends no signals: move the timestamp compiled policies are cached by.
    Policy.objects.filter(pk=policy.pk).update(updated_at=timezone.now())
    return True
