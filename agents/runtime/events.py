"""Run events: the one envelope, the emitter that numbers them, the writer that stores
and publishes them.

The event log is the truth and the channel layer only the doorbell (DESIGN section 6):
an event is written to the database *before* it is published, so any seq a client sees
can be fetched again from the log. Each run's ``EventEmitter`` numbers its events and
coalesces consecutive token deltas while they wait; one ``EventWriter`` per event loop
collects what every emitter of that loop has pending and stores it all in one
transaction (one fencing query for every attempt, one bulk insert), then publishes one
layer message per run. How long events wait is bounded: ``EVENT_FLUSH_WINDOW_MS`` when
the writer is idle, and never so long that a watching client goes more than
``STREAM_MAX_DELTA_GAP_MS`` without new text (see ``pause_before_write``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import structlog
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from agents.models import RunEvent, run_group_name
from agents.runtime.db import in_db_thread
from agents.runtime.fencing import store_batches
from monitoring import metrics

Envelope = dict[str, Any]
_log = structlog.get_logger(__name__)


def format_at(at: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as in the envelope examples."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (f"{at.microsecond // 1000:03d}Z")


def envelope_of(event: RunEvent) -> Envelope:
    return {
        "run": str(event.run_id),
        "seq": event.seq,
        "type": event.type,
        "at": format_at(event.created_at),
        "data": event.data,
    }


def next_seq_sync(run_id: uuid.UUID | str) -> int:
    """The seq the next event of a run gets, for writers outside a running executor."""
    last = RunEvent.objects.filter(run_id=run_id).aggregate(m=Max("seq"))["m"]
    return (last or 0) + 1


async def publish(run_id: uuid.UUID | str, envelopes: list[Envelope]) -> None:
    """Ring the doorbell: one layer message carries a batch of events in seq order."""
    if not envelopes:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(run_group_name(run_id), {"type": "run.events", "events": envelopes})


def publish_sync(run_id: uuid.UUID | str, envelopes: list[Envelope]) -> None:
    """Publish from synchronous code (views, the reaper); failures only cost latency.

    Subscribers fill gaps from the log, so a lost doorbell delays a client, it never
    loses it an event; that is why a publish error is swallowed here.
    """
    from asgiref.sync import async_to_sync

    try:
        async_to_sync(publish)(run_id, envelopes)
    except Exception:  # noqa: BLE001 - see docstring
        import structlog

        structlog.get_logger(__name__).warning("event_publish_failed", run_id=str(run_id))


def pause_before_write(last_write_s: float, window_s: float, max_gap_s: float) -> float:
    """How long the writer lets events gather before its next write.

    Idle, the flush window: an event waits at most that long to be stored with its
    neighbours. Under load (the last write and its publishes took longer than the
    window) as long as that write took, so that writing stays at about half of the
    loop's time and each write carries more coalesced text, but never so long that a
    watched run goes without new text for more than the bound: the pause plus the next
    write (estimated by the last one) fit in ``max_gap_s``. A write that alone takes
    longer than the bound gets no pause at all.
    """
    return max(0.0, min(max(window_s, last_write_s), max_gap_s - last_write_s))


class EventWriter:
    """One per event loop: stores the pending events of all its emitters per tick.

    A tick takes every dirty emitter's batch, stores them with ``store_batches`` (one
    transaction for all runs, fenced per attempt), then publishes each run's events as
    one layer message. Ticks never overlap, and an emitter's batch is published before
    its next one is taken, so each run's events go out in seq order. The task ends when
    nothing is left to write and starts again with the next event.
    """

    def __init__(self) -> None:
        self.window_s = settings.EVENT_FLUSH_WINDOW_MS / 1000
        self.max_gap_s = settings.STREAM_MAX_DELTA_GAP_MS / 1000
        self.last_write_s = 0.0
        self._dirty: dict[EventEmitter, None] = {}
        self._task: asyncio.Task[None] | None = None
        # Its own thread: a write queued behind the claims and fences of a hundred runs
        # starting at once on the shared pool held every run's text back for seconds.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="event-writer")
        self.failures = 0

    def want(self, emitter: EventEmitter) -> None:
        """Write this emitter's pending events with the next tick."""
        self._dirty[emitter] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._dirty:
            await asyncio.sleep(
                pause_before_write(self.last_write_s, self.window_s, self.max_gap_s)
            )
            began = time.monotonic()
            ok = await self.tick()
            self.last_write_s = time.monotonic() - began
            if not ok:  # the database is away: retry, without spinning
                await asyncio.sleep(min(0.05 * 2**self.failures, 2.0))

    async def tick(self) -> bool:
        emitters = list(self._dirty)
        self._dirty.clear()
        batches = [(emitter, emitter.take_batch()) for emitter in emitters]
        rows = [(e.run_id, e.attempt, events) for e, events in batches if events]
        try:
            lost = await in_db_thread(store_batches, self._thread)(rows) if rows else set()
        except asyncio.CancelledError:
            # The loop is shutting down; whether the write landed is unknown, and the
            # reaper recovers these runs. Nobody may wait on us forever.
            for emitter, _ in batches:
                emitter.abandon()
            raise
        except Exception:  # noqa: BLE001 - nothing was stored: the batches wait for the next tick
            self.failures += 1
            _log.warning("event_write_failed", runs=len(rows), failures=self.failures)
            for emitter, events in batches:
                emitter.put_back(events)
                self._dirty[emitter] = None
            return False
        self.failures = 0
        await asyncio.gather(*(e.stored(events, lost) for e, events in batches))
        return True


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventWriter] = (
    weakref.WeakKeyDictionary()
)


def event_writer() -> EventWriter:
    """The writer of the running event loop."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = EventWriter()
    return writer


class EventEmitter:
    """Numbers a run's events; the loop's ``EventWriter`` stores, then publishes, them.

    Owned by the one executor that moved the run to ``running``; nothing else appends
    events to that run while it runs, so the counter in memory is authoritative. With
    ``attempt``, every write is fenced (agents/runtime/fencing.py): once that attempt has
    lost the run, nothing more is stored or published and ``on_lost`` is called.
    """

    def __init__(
        self,
        run_id: uuid.UUID,
        next_seq: int,
        *,
        attempt: int | None = None,
        on_lost: Callable[[], None] | None = None,
    ):
        self.run_id = run_id
        self.next_seq = next_seq
        self.attempt = attempt
        self.on_lost = on_lost
        self.lost = False
        self._pending: list[RunEvent] = []
        # Stored by someone else (the claim's run.started) and not yet published: they go
        # out with the next batch, in seq order, one layer message fewer per run.
        self._unpublished: list[Envelope] = []
        self._writer = event_writer()
        self._queued = False  # in the writer's next tick
        self._idle = asyncio.Event()  # no batch of ours is being written or published
        self._idle.set()
        self.emitted = 0
        self.publish_failures = 0

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an event; it is stored and published with the writer's next tick."""
        if self.lost:
            return
        last = self._pending[-1] if self._pending else None
        if type_ == "message.delta" and last is not None and last.type == "message.delta":
            last.data["delta"] += data["delta"]  # our own dict, made below
        else:
            if type_ == "message.delta":
                data = dict(data)  # coalescing appends to it: never the caller's dict
            self._pending.append(
                RunEvent(
                    run_id=self.run_id,
                    seq=self.next_seq,
                    type=type_,
                    data=data,
                    created_at=timezone.now(),
                )
            )
            self.next_seq += 1
            self.emitted += 1
        self._want()

    def emit_delta(self, text: str) -> None:
        """A piece of model text: the per-token path, so it allocates nothing when the
        text joins the delta already waiting."""
        last = self._pending[-1] if self._pending else None
        if last is not None and last.type == "message.delta" and not self.lost:
            last.data["delta"] += text
            self._want()
        else:
            self.emit("message.delta", {"delta": text})

    def announce(self, envelope: Envelope) -> None:
        """Publish an event that is already stored, with the writer's next tick."""
        self._unpublished.append(envelope)
        self._want()

    def _want(self) -> None:
        if not self._queued:
            self._queued = True
            self._writer.want(self)

    # --- the writer's side ---------------------------------------------------------

    def take_batch(self) -> list[RunEvent]:
        """The events to store in this tick; published by ``stored`` afterwards."""
        self._queued = False
        self._idle.clear()
        if self.lost:
            return []
        batch, self._pending = self._pending, []
        return batch

    def put_back(self, batch: list[RunEvent]) -> None:
        """The tick failed and stored nothing: the batch goes first in the next one."""
        self._pending = batch + self._pending
        self._queued = True
        self._idle.set()

    def abandon(self) -> None:
        self._idle.set()

    async def stored(self, batch: list[RunEvent], lost: set[tuple[uuid.UUID, int | None]]) -> None:
        """The tick has stored ``batch`` (unless this attempt is in ``lost``): publish."""
        try:
            if (self.run_id, self.attempt) in lost:
                self._lose()
                return
            if batch:
                metrics.events_emitted.inc(len(batch))
                self._unpublished += [envelope_of(e) for e in batch]
            await self._publish_stored()
        finally:
            self._idle.set()

    # --- the executor's side -------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every event emitted so far is stored and published."""
        while not self.lost and (self._pending or self._unpublished or not self._idle.is_set()):
            if self._idle.is_set():
                self._want()
            await self._idle.wait()
            if self._queued:  # taken back after a failed tick, or more emitted meanwhile
                await asyncio.sleep(self._writer.window_s)

    def _lose(self) -> None:
        self.lost = True
        self._pending, self._unpublished = [], []
        _log.warning("run_claim_lost", run_id=str(self.run_id), attempt=self.attempt)
        if self.on_lost is not None:
            self.on_lost()

    async def take_pending(self) -> list[RunEvent]:
        """Hand the events not yet stored to a writer that stores them in its own
        transaction (the run's finish); it then calls ``published_after_store``. Waits
        for a batch the writer holds, so that everything before them is stored first."""
        await self._idle.wait()
        batch, self._pending = self._pending, []
        return batch

    async def published_after_store(self, stored: list[RunEvent]) -> None:
        """Publish events another writer has just stored, after everything before them."""
        await self._idle.wait()
        metrics.events_emitted.inc(len(stored))
        self._unpublished += [envelope_of(e) for e in stored]
        await self._publish_stored()

    async def _publish_stored(self) -> None:
        envelopes, self._unpublished = self._unpublished, []
        if not envelopes:
            return
        try:
            await publish(self.run_id, envelopes)
        except Exception:  # noqa: BLE001 - the events are stored; see below
            # The layer is only the doorbell: with Redis away a subscriber hears of these
            # events with the next one that gets through, or when it polls the log. The
            # run itself must go on.
            self.publish_failures += 1
            _log.warning("event_publish_failed", run_id=str(self.run_id), events=len(envelopes))

    def take_seq(self) -> int:
        """Hand the next seq to a writer that stores its own event (a status change)."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def give_back_seq(self, seq: int) -> None:
        """Return a seq that was not used, so the sequence stays gap-free."""
        if seq == self.next_seq - 1:
            self.next_seq = seq

    async def aclose(self) -> None:
        await self.flush()
