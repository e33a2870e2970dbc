"""``execute_run``: the one async code path that executes a run, whatever the executor."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.exceptions import UsageLimitExceeded
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

from agents.lifecycle import RunStatus, is_terminal
from agents.models import Run
from agents.runtime.events import EventEmitter
from agents.runtime.providers import build_model
from agents.services import run_transition
from agents.tools import get_tool
from agents.tools.utils import to_pydantic_ai
from monitoring import metrics

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 1.0


@dataclass
class RunState:
    """What the executor learns about a run while it streams."""

    usage: RunUsage = field(default_factory=RunUsage)
    tool_started: dict[str, float] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)


def build_agent(config: dict[str, Any]) -> PydanticAgent[None, str]:
    """A pydantic-ai agent from a run's frozen configuration."""
    tools = [to_pydantic_ai(get_tool(name)) for name in config.get("tools", [])]
    return PydanticAgent(
        build_model(config),
        instructions=config.get("instructions") or None,
        tools=tools,
        model_settings=config.get("model_settings") or None,
    )


def usage_limits(config: dict[str, Any]) -> UsageLimits:
    limits = config.get("limits", {})
    return UsageLimits(
        request_limit=limits.get("max_requests"),
        tool_calls_limit=limits.get("max_tool_calls"),
        input_tokens_limit=limits.get("max_input_tokens"),
        output_tokens_limit=limits.get("max_output_tokens"),
    )


def _load_run(run_id: uuid.UUID) -> Run | None:
    close_old_connections()
    return Run.objects.select_related("agent").filter(pk=run_id).first()


def _start(run_id: uuid.UUID) -> int | None:
    """queued -> running; returns the seq of ``run.started`` or None if we lost the race."""
    now = timezone.now()
    event = run_transition(
        run_id=run_id,
        to=RunStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempt=F("attempt") + 1,
    )
    return event.seq if event else None


def _heartbeat(run_id: uuid.UUID) -> str | None:
    Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


class RunExecution:
    """One attempt at executing one run."""

    def __init__(self, run: Run, emitter: EventEmitter) -> None:
        self.run = run
        self.emitter = emitter
        self.state = RunState()
        self.log = log.bind(run_id=str(run.id), agent=run.agent.slug)

    async def handle_events(self, ctx: Any, events: Any) -> None:
        """pydantic-ai's stream of model and tool events, mapped onto ours."""
        async for event in events:
            self.state.usage = ctx.usage
            self._map(event)

    def _map(self, event: AgentStreamEvent) -> None:
        emit = self.emitter.emit
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            if event.part.content:
                emit("message.delta", {"delta": event.part.content})
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
            if event.delta.content_delta:
                emit("message.delta", {"delta": event.delta.content_delta})
        elif isinstance(event, PartEndEvent) and isinstance(event.part, TextPart):
            self.state.text.append(event.part.content)
            emit("message.completed", {"content": event.part.content})
        elif isinstance(event, FunctionToolCallEvent):
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

    def usage_fields(self) -> dict[str, Any]:
        usage = self.state.usage
        return {
            "requests": usage.requests,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "tool_calls": usage.tool_calls,
        }

    def usage_data(self) -> dict[str, Any]:
        usage = self.state.usage
        return {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": "0",
        }

    async def execute(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Run the model loop; returns (final status, terminal event data, run fields)."""
        config = self.run.config
        agent = build_agent(config)
        timeout_s = config.get("limits", {}).get("timeout_s") or settings.RUN_TIMEOUT_S
        try:
            async with asyncio.timeout(timeout_s):
                result = await agent.run(
                    self.run.input,
                    event_stream_handler=self.handle_events,
                    usage_limits=usage_limits(config),
                )
        except TimeoutError:
            return self.outcome(RunStatus.TIMED_OUT, "timed_out", f"Run exceeded {timeout_s} s.")
        except UsageLimitExceeded as exc:
            return self.outcome(RunStatus.FAILED, "limit_exceeded", str(exc))
        self.state.usage = result.usage
        output = result.output
        usage = self.usage_data()
        self.emitter.emit("usage", usage)
        fields = {"output": output, **self.usage_fields()}
        return RunStatus.SUCCEEDED, {"output": output, "usage": usage}, fields

    def outcome(
        self, status: str, code: str, message: str
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        self.emitter.emit("usage", self.usage_data())
        fields = {
            "error_code": code,
            "error_message": message,
            "output": "".join(self.state.text),
            **self.usage_fields(),
        }
        data = {"error": {"code": code, "message": message}} if status == RunStatus.FAILED else {}
        return status, data, fields


async def _watch(run_id: uuid.UUID, work: asyncio.Task[Any]) -> None:
    """Heartbeat, and stop the work promptly when a cancel has been requested."""
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        status = await sync_to_async(_heartbeat)(run_id)
        if status == RunStatus.CANCELLING:
            work.cancel("cancel requested")
            return


async def execute_run(run_id: uuid.UUID | str) -> str | None:
    """Execute a queued run to a terminal state. Idempotent: a run that is not queued
    (already finished, or taken by another worker) is left alone. Returns the final status,
    or None when this call did nothing."""
    run_id = uuid.UUID(str(run_id))
    run = await sync_to_async(_load_run)(run_id)
    if run is None or is_terminal(run.status) or run.status != RunStatus.QUEUED:
        return None
    started_seq = await sync_to_async(_start)(run_id)
    if started_seq is None:
        return None
    structlog.contextvars.bind_contextvars(run_id=str(run_id), agent=run.agent.slug)
    emitter = EventEmitter(run_id, started_seq + 1)
    execution = RunExecution(run, emitter)
    work = asyncio.create_task(execution.execute())
    watcher = asyncio.create_task(_watch(run_id, work))
    started = time.monotonic()
    try:
        status, data, fields = await work
    except asyncio.CancelledError:
        if not watcher.done():
            raise  # our own task is being cancelled (shutdown), not the run
        status, data, fields = execution.outcome(
            RunStatus.CANCELLED, "cancelled", "Cancelled on request."
        )
    except Exception as exc:
        execution.log.exception("run_failed")
        status, data, fields = execution.outcome(
            RunStatus.FAILED, "internal_error", f"{type(exc).__name__}: the run failed."
        )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await emitter.flush()
    seq = emitter.take_seq()
    event = await sync_to_async(run_transition)(
        run_id=run_id, to=status, event_data=data, seq=seq, **fields
    )
    if event is None:
        # A cancel request arrived while the run was finishing: confirm the cancel.
        event = await sync_to_async(run_transition)(
            run_id=run_id, to=RunStatus.CANCELLED, seq=seq, **fields
        )
        status = RunStatus.CANCELLED
    if event is None:
        emitter.give_back_seq(seq)
    metrics.runs_finished.labels(agent=run.agent.slug, status=status).inc()
    metrics.run_duration.labels(agent=run.agent.slug).observe(time.monotonic() - started)
    execution.log.info("run_finished", status=status, events=emitter.next_seq - 1)
    return status
