"""Policy: compiled rules with whole-text, async (external) and streaming scans."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any

from .detectors import Detector, keyword_detector, re2_detector
from .external import check_external
from .injection import injection_detectors
from .normalize import normalise_literal, warm_up
from .params import validate_rule
from .pii import pii_detectors
from .regex_tools import analyse, flag_prefix
from .scanner import CompiledRule, Session, render
from .secret_patterns import secret_detectors, usable_known_secrets
from .types import STAGES, Finding, RuleSpec, ScanResult

KNOWN_SECRETS_RULE_ID = "builtin:known_secrets"


def _keyword_detectors(params: dict[str, Any]) -> list[Detector]:
    terms = [normalise_literal(t, folded=True).strip() for t in params["terms"]]
    terms = [t for t in terms if t]
    return [keyword_detector(terms, whole_word=params["mode"] == "word")]


def _regex_detectors(params: dict[str, Any]) -> list[Detector]:
    sensitive = params["case_sensitive"]
    flags = 0 if sensitive else re.IGNORECASE
    analysis = analyse(params["pattern"], flags, params["max_match_length"])
    return [
        re2_detector(
            "regex",
            analysis.bounded,
            analysis.prefix,
            analysis.max_width,
            view="cased" if sensitive else "folded",
            flags=flag_prefix(flags | re.MULTILINE),
        )
    ]


def _detectors(kind: str, params: dict[str, Any], known: Sequence[str]) -> list[Detector]:
    if kind == "keyword":
        return _keyword_detectors(params)
    if kind == "regex":
        return _regex_detectors(params)
    if kind == "pii":
        return pii_detectors(tuple(params["types"]))
    if kind == "secret":
        return secret_detectors(tuple(params["types"]), known if params["known"] else ())
    if kind == "prompt_injection":
        return list(
            injection_detectors(
                tuple(params["languages"]), params["threshold"], tuple(params["layers"])
            )
        )
    return []  # max_length and external have no pattern


def _compile(
    index: int, spec: RuleSpec, params: dict[str, Any], known: Sequence[str]
) -> CompiledRule:
    allow = frozenset(normalise_literal(a, folded=True).strip() for a in params.get("allow", ()))
    return CompiledRule(
        index=index,
        spec=spec,
        detectors=_detectors(spec.kind, params, known),
        allow=allow,
        max_chars=params.get("max_chars"),
    )


class Policy:
    """An ordered, compiled set of rules. Immutable after construction, so one instance
    can be shared by threads and tasks; every scan/stream keeps its own state.

    ``known_secrets`` are literal values (e.g. from the vault) to find and report as
    ``known_secret``. They live only inside compiled matchers: never in findings, reprs
    or error messages. If no ``secret`` rule looks for known values, an implicit rule
    (id ``builtin:known_secrets``, redact, all stages, high) is added so they are never
    leaked silently.
    """

    def __init__(self, rules: Sequence[RuleSpec], *, known_secrets: Sequence[str] = ()) -> None:
        warm_up()  # build the Unicode tables now, not during the first streamed chunk
        rules = list(rules)
        cleaned = [validate_rule(r) for r in rules]
        known = [normalise_literal(v, folded=False) for v in usable_known_secrets(known_secrets)]
        if known and not any(
            r.kind == "secret" and p["known"] for r, p in zip(rules, cleaned, strict=True)
        ):
            implicit = RuleSpec(
                id=KNOWN_SECRETS_RULE_ID,
                name="Known secret values",
                kind="secret",
                params={"types": [], "known": True},
                stages=frozenset(STAGES),
                action="redact",
                severity="high",
            )
            rules.append(implicit)
            cleaned.append(validate_rule(implicit))
        self.rules: tuple[RuleSpec, ...] = tuple(rules)
        compiled = [
            _compile(i, r, p, known) for i, (r, p) in enumerate(zip(rules, cleaned, strict=True))
        ]
        self._params = {r.id: p for r, p in zip(rules, cleaned, strict=True)}
        self._by_stage = {
            s: tuple(c for c in compiled if s in c.spec.stages and c.spec.kind != "external")
            for s in STAGES
        }
        self._external = {
            s: tuple(c.spec for c in compiled if s in c.spec.stages and c.spec.kind == "external")
            for s in STAGES
        }
        widths = [d.max_width + d.lookahead for c in compiled for d in c.detectors]
        self.max_match_length: int = max(widths, default=0)
        self._warm(compiled)

    def _warm(self, compiled: Sequence[CompiledRule]) -> None:
        # The first search in a process pays one-off engine set-up (~35 ms); pay it here
        # rather than on the first chunk of a user's stream. Detectors of text-altering
        # rules search their prefix language on every chunk: their DFAs are built now.
        for rule in compiled:
            if rule.altering:
                for det in rule.detectors:
                    if det.prefix is not None:
                        det.prefix.warm()
        for stage in STAGES:
            moderator = self.stream(stage)
            moderator.feed("warm up ")
            moderator.finish()

    def __repr__(self) -> str:
        return f"<Policy rules={len(self.rules)}>"

    def _stage_rules(self, stage: str) -> tuple[CompiledRule, ...]:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(sorted(STAGES))}")
        return self._by_stage[stage]

    def scan(self, text: str, stage: str) -> ScanResult:
        """Scan a whole text synchronously (external rules are skipped; see ``ascan``)."""
        session = Session(self._stage_rules(stage), stage, stop_on_block=False)
        session.feed(text, step=False)
        out = session.finish()
        return ScanResult(findings=session.findings(), text=out, blocked=session.blocked)

    async def ascan(
        self,
        text: str,
        stage: str,
        *,
        external_key: Callable[[RuleSpec], str | None] | None = None,
    ) -> ScanResult:
        """Scan including external moderation rules.

        Local rules run first; external APIs then see the *redacted* text, so secrets and
        PII are never sent to a third party. External findings span the whole text.
        """
        result = self.scan(text, stage)
        rules = self._external[stage]
        if not rules:
            return result
        verdicts = await asyncio.gather(
            *(
                check_external(
                    result.text, self._params[r.id], external_key(r) if external_key else None
                )
                for r in rules
            )
        )
        extra: list[Finding] = []
        for rule, verdict in zip(rules, verdicts, strict=True):
            if verdict.error:
                result.errors.append(f"{rule.name}: {verdict.error}")
            for kind in verdict.kinds:
                extra.append(
                    Finding(
                        rule.id, rule.name, kind, rule.action, stage, 0, len(text), rule.severity
                    )
                )
        result.findings.extend(extra)
        if result.blocked is None:
            result.blocked = next((f for f in extra if f.action == "block"), None)
        redact = next((f for f in extra if f.action == "redact"), None)
        if redact is not None:
            result.text = f"[REDACTED:{redact.kind}]"
        return result

    def stream(self, stage: str = "output") -> StreamModerator:
        """A moderator for text that arrives in chunks (external rules are not applied)."""
        return StreamModerator(Session(self._stage_rules(stage), stage))


class StreamModerator:
    """Moderates a stream chunk by chunk with a hold-back buffer.

    For every text and every way of chunking it, the concatenation of everything
    ``feed``/``finish`` return equals ``Policy.scan(text).text`` (when not blocked) and
    ``findings`` equals the whole-text findings. Text is held back only while it could
    still be part of a match of a redact/block/allow rule.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def feed(self, chunk: str) -> str:
        """Add a chunk; return text that is now safe to release (already redacted)."""
        return self._session.feed(chunk)

    def finish(self) -> str:
        """End of stream: release (redacted) everything still held."""
        return self._session.finish()

    @property
    def findings(self) -> list[Finding]:
        """Findings so far; offsets are relative to the whole original stream."""
        return self._session.findings()

    @property
    def blocked(self) -> Finding | None:
        """The blocking finding; once set, ``feed``/``finish`` return ''."""
        return self._session.blocked

    @property
    def held(self) -> int:
        """Characters received but not yet released."""
        return self._session.total - self._session.released

    def __repr__(self) -> str:
        return f"<StreamModerator held={self.held} findings={len(self.findings)}>"


def excerpt(text: str, finding: Finding, findings: Sequence[Finding], context: int = 40) -> str:
    """The text around ``finding`` with every sensitive span inside the window redacted.

    Sensitive = PII, secrets, known secrets and anything a redact rule matched (the
    finding itself included). Spans cut by the window edge are redacted too.
    """
    lo = max(0, finding.start - context)
    hi = min(len(text), finding.end + context)
    spans = [
        ((max(f.start, lo), f.end), max(f.start, lo), min(f.end, hi), f.kind)
        for f in findings
        if f.sensitive and f.start < hi and f.end > lo
    ]
    prefix = "…" if lo > 0 else ""
    suffix = "…" if hi < len(text) else ""
    return prefix + render(text[lo:hi], lo, spans) + suffix


def default_policy_rules() -> list[RuleSpec]:
    """A sensible default: redact PII and secrets everywhere, flag prompt injection in
    user input and tool output."""
    everywhere = frozenset(STAGES)
    return [
        RuleSpec("default:pii", "PII", "pii", {}, everywhere, "redact", "medium"),
        RuleSpec("default:secrets", "Secrets", "secret", {}, everywhere, "redact", "high"),
        RuleSpec(
            "default:prompt_injection",
            "Prompt injection",
            "prompt_injection",
            {},
            frozenset({"input", "tool_output"}),
            "flag",
            "high",
        ),
    ]
