"""``execute_run``: the one async code path that executes a run, whatever the executor."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.usage import RunUsage, UsageLimits

from agents.lifecycle import RunStatus
from agents.models import Run
from agents.runtime import claims
from agents.runtime.db import in_db_thread
from agents.runtime.events import EventEmitter, envelope_of
from agents.runtime.fencing import ClaimLost, holds_claim
from agents.runtime.guard import Guard, RunBlocked
from agents.runtime.ledger import BudgetExhausted, RunLedger, RunLimitExceeded
from agents.runtime.providers import MeteredModel, build_model, error_code, error_message
from agents.runtime.watch import RunWatch, run_watch
from agents.tools import ToolContext, get_tool
from agents.tools.utils import to_pydantic_ai
from monitoring import metrics

log = structlog.get_logger(__name__)

Outcome = tuple[str, dict[str, Any], dict[str, Any]]
Claimed = tuple[Run, Any]  # the run and its stored run.started event

# pydantic-ai names its usage limits; ours are named after the Agent fields.
_LIMIT_NAMES = {
    "request_limit": "max_requests",
    "tool_calls_limit": "max_tool_calls",
    "input_tokens_limit": "max_input_tokens",
    "output_tokens_limit": "max_output_tokens",
    "total_tokens_limit": "max_total_tokens",
}


@dataclass
class RunState:
    """What the executor learns about a run while it streams."""

    usage: RunUsage = field(default_factory=RunUsage)
    tool_started: dict[str, float] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    streamed: list[str] = field(default_factory=list)  # every delta, for partial output
    messages: list[Any] = field(default_factory=list)


def usage_limits(limits: dict[str, Any]) -> UsageLimits:
    return UsageLimits(
        request_limit=limits.get("max_requests"),
        tool_calls_limit=limits.get("max_tool_calls"),
        input_tokens_limit=limits.get("max_input_tokens"),
        output_tokens_limit=limits.get("max_output_tokens"),
    )


def effective_timeout_s(limits: dict[str, Any]) -> float:
    """The run's wall-time limit: its own (at most the agent's), never above the global
    ``RUN_TIMEOUT_S`` that the Celery time limits are derived from. Only a missing limit
    means "none set"; a limit is never tested for truth, so no value can widen it."""
    timeout_s = limits.get("timeout_s")
    if timeout_s is None:
        return float(settings.RUN_TIMEOUT_S)
    return float(min(timeout_s, settings.RUN_TIMEOUT_S))


def limit_name(exc: UsageLimitExceeded) -> str:
    match = re.search(r"(\w+_limit)", str(exc))
    return _LIMIT_NAMES.get(match.group(1), match.group(1)) if match else "usage"


class RunExecution:
    """One attempt at executing one run."""

    def __init__(
        self,
        run: Run,
        prepared: claims.Prepared,
        emitter: EventEmitter,
        moderation: Any | None = None,
    ) -> None:
        self.run = run
        self.config = run.config
        self.prepared = prepared
        self.emitter = emitter
        self.guard = Guard(moderation, emitter)
        self.state = RunState()
        limits = self.config.get("limits", {})
        max_cost = limits.get("max_cost_usd")
        self.ledger = RunLedger(
            run_id=run.id,
            agent_id=run.agent_id,
            attempt=run.attempt,
            config=self.config,
            emitter=emitter,
            override=prepared.price_override,
            max_cost_usd=Decimal(max_cost) if max_cost is not None else None,
            budget_left_usd=prepared.budget_left_usd,
        )
        self.log = log.bind(run_id=str(run.id), agent=run.agent.slug)

    def build_agent(self) -> PydanticAgent[None, str]:
        """A pydantic-ai agent from the run's frozen configuration."""
        provider = self.config["provider"]
        model = MeteredModel(
            build_model(self.config, api_key=self.prepared.api_key),
            observer=self.ledger,
            retries=int(provider.get("max_retries", 3)),
            base_delay_s=float(provider.get("retry_base_delay_s", 0.5)),
            fence=self.fence,
        )
        tools = [self.bind_tool(name) for name in self.config.get("tools", [])]
        return PydanticAgent(
            model,
            instructions=self.config.get("instructions") or None,
            tools=tools,
            model_settings=self.config.get("model_settings") or None,
        )

    async def fence(self) -> None:
        """Before each provider request: stop if this attempt no longer owns the run."""
        if not await in_db_thread(holds_claim)(self.run.id, self.run.attempt):
            raise ClaimLost(str(self.run.id))

    def bind_tool(self, name: str) -> Any:
        """The registered tool with this run's context bound in (config, vault access)."""
        ctx = ToolContext(
            run_id=str(self.run.id),
            agent=self.run.agent.slug,
            tool_config=self.config.get("tool_config", {}).get(name, {}),
            secret=self.reveal_secret,
        )
        return to_pydantic_ai(get_tool(name), ctx, after=self.guard.check_tool_output)

    async def reveal_secret(self, name: str) -> str:
        """Plaintext of a vault secret for a tool, revealed once per run and audited."""
        from secrets_vault.reveal_services import areveal_once

        value = await areveal_once(
            self.prepared.reveal_cache,
            name=name,
            purpose=f"run:{self.run.id}",
            actor="runtime",
            agent=self.run.agent,
        )
        return value.reveal()

    async def handle_events(self, ctx: Any, events: Any) -> None:
        """pydantic-ai's stream of model and tool events, mapped onto ours."""
        async for event in events:
            self.state.usage = ctx.usage
            await self._map(event)

    async def _delta(self, text: str) -> None:
        """Model text goes out only as the output guard releases it."""
        released = await self.guard.feed(text) if text else ""
        if released:
            self.state.streamed.append(released)
            self.emitter.emit_delta(released)

    async def _map(self, event: AgentStreamEvent) -> None:
        emit = self.emitter.emit
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            self.guard.start_part()
            await self._delta(event.part.content)
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
            await self._delta(event.delta.content_delta)
        elif isinstance(event, PartEndEvent) and isinstance(event.part, TextPart):
            rest, content = await self.guard.finish_part()
            if rest:
                self.state.streamed.append(rest)
                self.emitter.emit_delta(rest)
            self.state.text.append(content)
            emit("message.completed", {"content": content})
        elif isinstance(event, FunctionToolCallEvent):
            self.state.text.clear()  # the answer is the text after the last tool call
            part = event.part
            self.state.tool_started[part.tool_call_id] = time.monotonic()
            emit(
                "tool.call",
                {"call_id": part.tool_call_id, "name": part.tool_name, "args": part.args_as_dict()},
            )
        elif isinstance(event, FunctionToolResultEvent):
            self._tool_result(event)

    def _tool_result(self, event: FunctionToolResultEvent) -> None:
        part = event.part
        started = self.state.tool_started.pop(part.tool_call_id, time.monotonic())
        ok = part.outcome == "success"
        data: dict[str, Any] = {
            "call_id": part.tool_call_id,
            "name": part.tool_name,
            "ok": ok,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        data["output" if ok else "error"] = part.model_response_str()
        metrics.tool_calls.labels(tool=part.tool_name, outcome="ok" if ok else "error").inc()
        self.emitter.emit("tool.result", data)

    def run_fields(self) -> dict[str, Any]:
        return {
            "requests": len(self.ledger.calls),
            "input_tokens": self.ledger.input_tokens,
            "output_tokens": self.ledger.output_tokens,
            "tool_calls": self.state.usage.tool_calls,
            "usage_estimated": self.ledger.estimated,
            "cost_usd": self.ledger.cost,
        }

    async def execute(self) -> Outcome:
        """Run the model loop; returns (final status, terminal event data, run fields)."""
        limits = self.config.get("limits", {})
        timeout_s = effective_timeout_s(limits)
        try:
            async with asyncio.timeout(timeout_s):
                prompt = await self.guard.check_input(self.run.input)
                result = await self.build_agent().run(
                    prompt,
                    message_history=self.prepared.history or None,
                    event_stream_handler=self.handle_events,
                    usage_limits=usage_limits(limits),
                )
        except TimeoutError:
            return self.outcome(RunStatus.TIMED_OUT, "timed_out", f"Run exceeded {timeout_s} s.")
        except UsageLimitExceeded as exc:
            name = limit_name(exc)
            return self.outcome(RunStatus.FAILED, "limit_exceeded", str(exc), limit=name)
        except RunLimitExceeded as exc:
            return self.outcome(RunStatus.FAILED, "limit_exceeded", str(exc), limit=exc.limit)
        except BudgetExhausted as exc:
            return self.outcome(RunStatus.FAILED, "budget_exhausted", str(exc))
        except RunBlocked as exc:
            status, data, fields = self.outcome(RunStatus.BLOCKED, "blocked", str(exc))
            return status, {"stage": exc.stage, "rule": exc.rule}, fields
        except (ModelAPIError, UnexpectedModelBehavior) as exc:
            return self.outcome(RunStatus.FAILED, error_code(exc), error_message(exc))
        self.state.usage = result.usage
        self.state.messages = self.guard.redact_messages(_messages_json(result))
        # With a policy, the answer is what moderation released, never the raw model text.
        output = "".join(self.state.text) if self.guard.active else result.output
        usage = self.ledger.usage()
        self.emitter.emit("usage", usage)
        fields = {"output": output, "messages": self.state.messages, **self.run_fields()}
        return RunStatus.SUCCEEDED, {"output": output, "usage": usage}, fields

    def outcome(self, status: str, code: str, message: str, **details: Any) -> Outcome:
        """A run that ends other than by succeeding keeps its partial output and usage."""
        self.emitter.emit("usage", self.ledger.usage())
        fields = {
            "error_code": code,
            "error_message": message,
            "output": "".join(self.state.streamed),
            **self.run_fields(),
        }
        data: dict[str, Any] = {}
        if status == RunStatus.FAILED:
            data = {"error": {"code": code, "message": message, **details}}
        return status, data, fields


def _messages_json(result: Any) -> list[Any]:
    import json

    messages: list[Any] = json.loads(result.new_messages_json())
    return messages


async def execute_run(run_id: uuid.UUID | str) -> str | None:
    """Execute a queued run to a terminal state.

    Idempotent: a run that is not queued (finished, or alive on another worker) is left
    alone, so a redelivered task never runs a second copy. When the agent's concurrency
    limit is reached the run stays queued and starts when a slot frees up.
    Returns the final status, or None when this call did nothing.
    """
    claimed = await claim_run(run_id)
    if claimed is None:
        return None
    return await run_claimed(claimed)


async def claim_run(run_id: uuid.UUID | str) -> Claimed | None:
    """Move the run ``queued -> running`` (see claims.claim); None when nothing started."""
    return await in_db_thread(claims.claim)(uuid.UUID(str(run_id)))


async def run_claimed(claimed: Claimed) -> str | None:
    """Execute a run this process has just claimed, to its terminal state."""
    run, started_event = claimed
    structlog.contextvars.bind_contextvars(run_id=str(run.id), agent=run.agent.slug)
    watch = run_watch()
    watch.hold(run.id, run.attempt)  # alive from the claim, not only while it streams
    try:
        return await _execute_claimed(run, started_event, watch)
    finally:
        watch.discard(run.id)


async def _execute_claimed(run: Run, started_event: Any, watch: RunWatch) -> str | None:
    emitter = EventEmitter(
        run.id,
        started_event.seq + 1,
        attempt=run.attempt,
        on_lost=lambda: watch.lose(run.id),
    )
    emitter.announce(envelope_of(started_event))
    started = time.monotonic()
    execution: RunExecution | None = None
    try:
        prepared = await in_db_thread(claims.prepare)(run)
        moderation = await claims.moderation_for(run, prepared)
        execution = RunExecution(run, prepared, emitter, moderation)
        status, data, fields = await _supervise(run.id, run.attempt, execution)
    except Exception as exc:
        # A lost claim lands here too; finish() then finds it lost, stores only the
        # ledger of the calls made, and raises ClaimLost again.
        if not isinstance(exc, ClaimLost):
            log.exception("run_failed", run_id=str(run.id))
        status, data, fields = _crash_outcome(exc)
    # The last events, the ledger and the terminal status go in one transaction.
    last_events = await emitter.take_pending()
    calls = execution.ledger.calls if execution else []
    try:
        status, stored = await in_db_thread(claims.finish)(
            run,
            status=status,
            data=data,
            fields=fields,
            calls=calls,
            emitter=emitter,
            events=last_events,
        )
    except ClaimLost:
        # Another attempt owns the run now (it was re-queued while this one looked dead):
        # this one stops here, silently; the owner writes the run's story.
        log.warning("run_claim_lost", run_id=str(run.id), attempt=run.attempt)
        metrics.runs_claim_lost.inc()
        return None
    await emitter.published_after_store(stored)
    record_metrics(run, status, execution, time.monotonic() - started)
    log.info("run_finished", run_id=str(run.id), status=status, events=emitter.next_seq - 1)
    if run.agent.max_concurrent_runs:  # only a limited agent has runs waiting for a slot
        await in_db_thread(claims.start_next_queued)(run.agent)
    return status


async def _supervise(run_id: uuid.UUID, attempt: int, execution: RunExecution) -> Outcome:
    """Execute under the loop's run watch: a cancel request stops the work promptly, a
    lost claim stops it silently, and the run's heartbeat stays fresh while it runs."""
    watch = run_watch()
    work = asyncio.create_task(execution.execute())
    watch.add(run_id, work, attempt)
    try:
        return await work
    except asyncio.CancelledError:
        why = watch.detach(run_id)
        if why == "lost":
            raise ClaimLost(str(run_id)) from None
        if why is None:
            raise  # our own task is being cancelled (shutdown), not the run
        return execution.outcome(RunStatus.CANCELLED, "cancelled", "Cancelled on request.")
    finally:
        watch.detach(run_id)  # the heartbeat goes on until run_claimed has finished


def _crash_outcome(exc: Exception) -> Outcome:
    code, message = "internal_error", f"{type(exc).__name__}: the run failed."
    if isinstance(exc, claims.RunSetupError):
        code, message = exc.code, str(exc)
    data = {"error": {"code": code, "message": message}}
    return RunStatus.FAILED, data, {"error_code": code, "error_message": message}


def record_metrics(
    run: Run, status: str, execution: RunExecution | None, duration_s: float
) -> None:
    agent = run.agent.slug
    metrics.runs_finished.labels(agent=agent, status=status).inc()
    metrics.run_duration.labels(agent=agent).observe(duration_s)
    if run.started_at is not None:
        wait = (run.started_at - run.created_at).total_seconds()
        metrics.run_queue_wait.labels(agent=agent).observe(max(wait, 0.0))
    if execution is None:
        return
    ledger = execution.ledger
    metrics.tokens.labels(agent=agent, direction="input").inc(ledger.input_tokens)
    metrics.tokens.labels(agent=agent, direction="output").inc(ledger.output_tokens)
    metrics.cost_usd.labels(agent=agent).inc(float(ledger.cost))
    for call in ledger.calls:
        metrics.model_calls.labels(agent=agent, price_source=call.price_source).inc()
