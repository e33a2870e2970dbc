"""The adapter a run executor uses to moderate one run (docs/moderation.md, "In a run").

Everything that touches the database happens in ``for_run`` (loading and compiling the
policy, revealing external API keys) and in ``record`` (writing flags). The checks and
the output stream only run the compiled engine, so the streaming path has no ORM calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async

from moderation import engine, metrics
from moderation.engine import Finding, RuleSpec, StreamModerator
from moderation.models import Policy
from moderation.services import (
    FAIL_CLOSED_RULE_ID,
    flag_event_payloads,
    flags_record,
    policy_compile,
)

log = structlog.get_logger(__name__)

# Above this many characters a scan (~1 ms per 2 KB) goes to a worker thread so it does
# not stall other runs sharing the event loop.
THREAD_SCAN_CHARS = 50_000
FAIL_CLOSED_RULE = RuleSpec(
    id=FAIL_CLOSED_RULE_ID,
    name="Moderation unavailable (policy fails closed)",
    kind="regex",
    params={"pattern": r"[\s\S]"},
    stages=frozenset(engine.STAGES),
    action="block",
    severity="high",
)

ExternalKey = Callable[[RuleSpec], "str | None"]


@dataclass(frozen=True)
class StageOutcome:
    """The result of moderating one input or tool output.

    ``text`` is what the run should use from now on (redactions applied); ``blocked`` is
    the first blocking finding, or None. ``original`` is kept for ``record`` (excerpts):
    never log or emit it.
    """

    stage: str
    text: str
    findings: list[Finding]
    blocked: Finding | None
    errors: list[str] = field(default_factory=list)
    original: str = field(default="", repr=False)
    tool_name: str = ""

    @property
    def changed(self) -> bool:
        return self.text != self.original


class OutputStream(StreamModerator):
    """A ``StreamModerator`` that also keeps the original text it was fed, so ``record``
    can build excerpts once the stream is done (or blocked)."""

    def __init__(self, inner: StreamModerator, stage: str) -> None:
        # Share the engine's session: this class only observes what goes in.
        super().__init__(inner._session)
        self.stage = stage
        self._parts: list[str] = []
        self._recorded: set[tuple[str, str, int, int]] = set()

    def feed(self, chunk: str) -> str:
        if self.blocked is None:  # after a block the engine drops input; so do we
            self._parts.append(chunk)
        return super().feed(chunk)

    @property
    def original(self) -> str:
        return "".join(self._parts)

    def take_unrecorded(self, upto: int) -> list[Finding]:
        """Findings ending by ``upto`` not handed out before (``record`` may be called
        more than once on a stream, e.g. at a block and at the end)."""
        new = []
        for finding in self.findings:
            key = (finding.rule_id, finding.kind, finding.start, finding.end)
            if key not in self._recorded and finding.end <= upto:
                self._recorded.add(key)
                new.append(finding)
        return new


class RunModeration:
    """Moderation of one run: a compiled policy plus the run's identity for flags."""

    def __init__(
        self,
        *,
        run_id: Any,
        agent_id: int,
        policy: engine.Policy,
        policy_name: str,
        fail_open: bool,
        external_keys: dict[str, str | None] | None = None,
        broken: bool = False,
    ) -> None:
        self.run_id = run_id
        self.agent_id = agent_id
        self.policy = policy
        self.policy_name = policy_name
        self.fail_open = fail_open
        self._external_keys = external_keys or {}
        # A policy that failed closed: checks block at once; the stream uses
        # FAIL_CLOSED_RULE, which blocks at the first character.
        self.broken = broken

    @classmethod
    async def for_run(
        cls,
        *,
        run_id: Any,
        agent_id: int,
        policy_id: int | None,
        known_secrets: Sequence[str] = (),
        external_key: ExternalKey | None = None,
    ) -> RunModeration | None:
        """Load and compile the run's policy; None when there is none.

        ``known_secrets`` are the vault values the agent can see (redacted wherever they
        appear). ``external_key(rule)`` returns the API key of an external rule; it is
        called here, once per rule, in a worker thread, so it may use the ORM.

        A policy whose rules no longer compile is logged; with ``fail_mode=closed`` the
        run gets a policy that blocks everything, with ``open`` no moderation (None).
        """
        if policy_id is None:
            return None
        return await sync_to_async(cls._load)(
            run_id=run_id,
            agent_id=agent_id,
            policy_id=policy_id,
            known_secrets=tuple(known_secrets),
            external_key=external_key,
        )

    @classmethod
    def _load(
        cls,
        *,
        run_id: Any,
        agent_id: int,
        policy_id: int,
        known_secrets: Sequence[str],
        external_key: ExternalKey | None,
    ) -> RunModeration | None:
        row = Policy.objects.filter(pk=policy_id).first()
        if row is None:
            log.warning("moderation_policy_missing", policy_id=policy_id, run_id=str(run_id))
            return None
        fail_open = row.fail_mode == Policy.FailMode.OPEN
        broken = False
        try:
            compiled = policy_compile(row, known_secrets=known_secrets)
        except Exception:
            log.exception("moderation_policy_broken", policy=row.name, fail_open=fail_open)
            if fail_open:
                return None
            compiled = engine.Policy([FAIL_CLOSED_RULE], known_secrets=known_secrets)
            broken = True
        keys = {r.id: _reveal(external_key, r) for r in compiled.rules if r.kind == "external"}
        return cls(
            run_id=run_id,
            agent_id=agent_id,
            policy=compiled,
            policy_name=row.name,
            fail_open=fail_open,
            external_keys=keys,
            broken=broken,
        )

    # --- checks (no ORM) -----------------------------------------------------------------

    async def check_input(self, text: str) -> StageOutcome:
        """Moderate the user's input before the model sees it."""
        return await self._check(text, "input")

    async def check_tool_output(self, tool_name: str, text: str) -> StageOutcome:
        """Moderate what a tool returned before the model sees it."""
        return await self._check(text, "tool_output", tool_name=tool_name)

    def output_stream(self) -> OutputStream:
        """A fresh moderator for the model's streamed answer: feed each delta, send only
        what ``feed`` returns, ``finish()`` at the end; stop when ``blocked`` is set."""
        return OutputStream(self.policy.stream("output"), "output")

    async def _check(self, text: str, stage: str, *, tool_name: str = "") -> StageOutcome:
        if self.broken:
            return self._unavailable(text, stage, tool_name)
        try:
            result = await self._scan(text, stage, external=True)
        except Exception:
            log.exception("moderation_failed", stage=stage, policy=self.policy_name)
            if self.fail_open:
                return StageOutcome(stage, text, [], None, ["moderation failed"], text, tool_name)
            return self._unavailable(text, stage, tool_name)
        return StageOutcome(
            stage=stage,
            text=result.text,
            findings=list(result.findings),
            blocked=result.blocked,
            errors=list(result.errors),
            original=text,
            tool_name=tool_name,
        )

    def _unavailable(self, text: str, stage: str, tool_name: str) -> StageOutcome:
        """Fail closed: one blocking finding over the whole text, and no text passes."""
        blocked = Finding(
            FAIL_CLOSED_RULE.id,
            FAIL_CLOSED_RULE.name,
            "moderation_error",
            "block",
            stage,
            0,
            len(text),
            "high",
        )
        return StageOutcome(
            stage, "", [blocked], blocked, ["moderation unavailable"], text, tool_name
        )

    async def _scan(self, text: str, stage: str, *, external: bool) -> engine.ScanResult:
        has_external = external and any(
            r.kind == "external" and stage in r.stages for r in self.policy.rules
        )
        if has_external:
            return await self.policy.ascan(text, stage, external_key=self._external_key)
        if len(text) > THREAD_SCAN_CHARS:
            return await asyncio.to_thread(self.policy.scan, text, stage)
        return self.policy.scan(text, stage)

    def _external_key(self, rule: RuleSpec) -> str | None:
        return self._external_keys.get(rule.id)

    # --- recording (ORM, batched) ----------------------------------------------------------

    async def record(
        self,
        source: StageOutcome | OutputStream | Sequence[Finding],
        stage: str | None = None,
        text: str | None = None,
    ) -> list[dict[str, Any]]:
        """Count every finding in the metrics and store one flag per ``flag``/``block``
        finding (one insert). Returns the ``moderation.flagged`` event payloads
        ``{stage, rule, action, kind, severity, flag}`` (plus ``tool`` for tool output),
        never the matched text.

        Pass a ``StageOutcome``, the ``OutputStream`` (once finished or blocked; calling
        it again records only new findings), or findings with their stage and original
        text. Call it for every outcome, also when nothing was found: it is free then.
        """
        tool_name = ""
        if isinstance(source, StageOutcome):
            stage, text, findings = source.stage, source.original, list(source.findings)
            tool_name = source.tool_name
            context = findings
        elif isinstance(source, OutputStream):
            stage, text, findings, context = await self._stream_findings(source)
        else:
            if stage is None or text is None:
                raise TypeError("record(findings, stage, text): stage and text are required")
            findings = list(source)
            context = findings
        for finding in findings:
            metrics.findings_total.labels(
                stage=finding.stage, kind=finding.kind, action=finding.action
            ).inc()
        # Redactions are reported too (every finding emits moderation.flagged), but only
        # flag and block findings open a triage item.
        payloads = [
            redaction_payload(f, tool_name=tool_name) for f in findings if f.action == "redact"
        ]
        if not any(f.action in ("flag", "block") for f in findings):
            return payloads
        flags = await sync_to_async(flags_record)(
            run_id=self.run_id,
            agent_id=self.agent_id,
            text=text,
            findings=findings,
            context=context,
        )
        return payloads + flag_event_payloads(flags, tool_name=tool_name)

    async def _stream_findings(
        self, stream: OutputStream
    ) -> tuple[str, str, list[Finding], list[Finding]]:
        text = stream.original
        if stream.blocked is not None:
            # Nothing after the block was released or fully scanned: show none of it.
            text = text[: stream.blocked.end]
        new = stream.take_unrecorded(len(text))
        context = new
        if any(f.action in ("flag", "block") for f in new):
            rescanned = await self._scan(text, stream.stage, external=False)
            context = [*new, *rescanned.findings]
        return stream.stage, text, new, context


def _reveal(external_key: ExternalKey | None, rule: RuleSpec) -> str | None:
    """An external rule's API key; a lookup that fails leaves the rule without a key, so
    the rule's own fail mode applies (its error never carries the key)."""
    if external_key is None:
        return None
    try:
        return external_key(rule)
    except Exception:
        log.exception("moderation_external_key_failed", rule=rule.name)
        return None


def redaction_payload(finding: Finding, *, tool_name: str = "") -> dict[str, Any]:
    """The ``moderation.flagged`` data of a redaction: where and what kind, never the text."""
    data: dict[str, Any] = {
        "stage": finding.stage,
        "rule": finding.rule_name,
        "action": finding.action,
        "kind": finding.kind,
        "severity": finding.severity,
        "flag": None,
    }
    if tool_name:
        data["tool"] = tool_name
    return data
