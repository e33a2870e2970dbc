"""Benchmark and test helper: a real run whose events come from a paced synthetic emitter.

It creates a run row for an agent (``queued``, never handed to an executor), moves it to
``running``, then drives the runtime's own ``EventEmitter`` (stored in micro-batches, then
published to the run's group) with N ``message.delta`` events at a given rate, and ends
the run ``succeeded`` exactly as the engine does. So the streaming path under test is the
production one; only the model is replaced by a loop, in a process playing the worker.

Each delta carries ``t``, the wall-clock time of its emission (``time.time()``), so a
client on the same machine can measure emission-to-receipt latency with µs resolution.
With ``--coalesce`` the runtime's coalescing is on, as in a real run, and merges deltas,
so each token's text is instead its own emission time (``"1764600000.123456 "``): a
client splits the delta it receives into tokens and gets each token's latency.

    manage.py emit_synthetic_run --events 10000 --rate 500 --wait-stdin

prints the run id on the first line, waits for a line on stdin when asked (so clients can
connect first), then prints a JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from agents.lifecycle import RunStatus
from agents.models import Agent, Run, RunEvent
from agents.runtime.events import EventEmitter
from agents.services import agent_config_snapshot, run_transition


class UncoalescedEmitter(EventEmitter):
    """Every delta its own event, so N emitted deltas are N events on the wire."""

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        # The base class only coalesces into the last pending event; hide the batch from
        # it for this one call, so the new delta becomes an event of its own.
        pending, self._pending = self._pending, []
        super().emit(type_, data)
        pending.extend(self._pending)
        self._pending = pending


def _create_run(agent_slug: str, username: str, events: int) -> uuid.UUID:
    agent = Agent.objects.select_related("provider").get(slug=agent_slug)
    owner = get_user_model().objects.get(username=username)
    with transaction.atomic():
        run = Run.objects.create(
            agent=agent,
            owner=owner,
            input=f"synthetic stream of {events} deltas",
            config=agent_config_snapshot(agent),
            # This process plays the worker: marked as handed over, so the dispatcher does
            # not give the run to a real worker while it waits for "go".
            dispatched_at=timezone.now(),
        )
        RunEvent.objects.create(
            run=run, seq=1, type="run.queued", data={}, created_at=run.created_at
        )
    return run.id


def _start(run_id: uuid.UUID) -> int:
    now = timezone.now()
    event = run_transition(run_id=run_id, to=RunStatus.RUNNING, started_at=now, heartbeat_at=now)
    if event is None:
        raise CommandError("the run could not be started")
    return event.seq


def _heartbeat(run_id: uuid.UUID) -> None:
    Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())


def _drop_publishes(every: int) -> None:
    """Make the doorbell lossy: the log still gets every event, subscribers must fill."""
    from agents.runtime import events

    real = events.publish
    count = 0

    async def lossy(run_id: Any, envelopes: list[Any]) -> None:
        nonlocal count
        count += 1
        if count % every:
            await real(run_id, envelopes)

    events.publish = lossy


class Command(BaseCommand):
    help = "Stream a real run with N paced synthetic deltas (benchmarks and tests)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--agent", default="demo-assistant")
        parser.add_argument("--owner", default="admin")
        parser.add_argument("--events", type=int, default=1000, help="message.delta events")
        parser.add_argument("--rate", type=float, default=0, help="events/s; 0 = flat out")
        parser.add_argument("--delta-chars", type=int, default=8)
        parser.add_argument("--wait-stdin", action="store_true", help="start on a stdin line")
        parser.add_argument("--coalesce", action="store_true", help="let deltas coalesce")
        parser.add_argument(
            "--drop-every",
            type=int,
            default=0,
            help="store every batch but publish no Kth one (a lossy channel layer)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["drop_every"]:
            _drop_publishes(options["drop_every"])
        run_id = _create_run(options["agent"], options["owner"], options["events"])
        self.stdout.write(str(run_id))
        self.stdout.flush()
        if options["wait_stdin"]:
            sys.stdin.readline()
        summary = asyncio.run(self._emit(run_id, options))
        self.stdout.write(json.dumps(summary))

    async def _emit(self, run_id: uuid.UUID, options: dict[str, Any]) -> dict[str, Any]:
        started_seq = await sync_to_async(_start)(run_id)
        emitter_class = EventEmitter if options["coalesce"] else UncoalescedEmitter
        emitter = emitter_class(run_id, started_seq + 1)
        n, rate = options["events"], options["rate"]
        coalesce = options["coalesce"]
        piece = ("x" * max(options["delta_chars"] - 1, 0)) + " "
        pieces: list[str] = []
        began = time.monotonic()
        last_beat = began
        for i in range(n):
            if rate:
                delay = began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 50 == 0:
                await asyncio.sleep(0)  # let the flush timer run between bursts
            if coalesce:
                pieces.append(f"{time.time():.6f} ")
                emitter.emit_delta(pieces[-1])
            else:
                emitter.emit("message.delta", {"delta": piece, "t": time.time()})
            if time.monotonic() - last_beat > 1.0:
                last_beat = time.monotonic()
                await sync_to_async(_heartbeat)(run_id)
        text = "".join(pieces) if coalesce else piece * n
        emitter.emit("message.completed", {"content": text})
        usage = {"input_tokens": 0, "output_tokens": n, "cost_usd": "0"}
        emitter.emit("usage", usage)
        # flush(), not aclose(): aclose cancels a timer that may be mid-flush, which can
        # lose that batch (reported to the runtime's owner).
        await emitter.flush()
        emitted_s = time.monotonic() - began
        await sync_to_async(run_transition)(
            run_id=run_id,
            to=RunStatus.SUCCEEDED,
            event_data={"output": text, "usage": usage},
            seq=emitter.take_seq(),
            output=text,
            output_tokens=n,
        )
        return {"run": str(run_id), "events": emitter.next_seq - 1, "emit_s": emitted_s}
