"""Run events: the one envelope, and the emitter that numbers, stores and publishes them.

The event log is the truth and the channel layer only the doorbell (DESIGN section 6):
an event is written to the database *before* it is published, so any seq a client sees
can be fetched again from the log. Events are written and published in micro-batches
(``EVENT_FLUSH_WINDOW_MS``); consecutive token deltas inside one window are coalesced
into a single event, which keeps seq gap-free and the concatenated deltas equal to the
final message.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from agents.models import RunEvent, run_group_name
from agents.runtime.db import in_db_thread
from agents.runtime.fencing import store_events
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


class EventEmitter:
    """Numbers a run's events and writes, then publishes, them in small batches.

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
        window_ms: int | None = None,
        attempt: int | None = None,
        on_lost: Callable[[], None] | None = None,
    ):
        self.run_id = run_id
        self.next_seq = next_seq
        self.attempt = attempt
        self.on_lost = on_lost
        self.lost = False
        self.window_s = (settings.EVENT_FLUSH_WINDOW_MS if window_ms is None else window_ms) / 1000
        self._pending: list[RunEvent] = []
        # Stored by someone else (the claim's run.started) and not yet published: they go
        # out with the next batch, in seq order, one layer message fewer per run.
        self._unpublished: list[Envelope] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self.emitted = 0
        self.publish_failures = 0

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an event; it is stored and published within the flush window."""
        if self.lost:
            return
        last = self._pending[-1] if self._pending else None
        if type_ == "message.delta" and last is not None and last.type == "message.delta":
            last.data = {"delta": last.data["delta"] + data["delta"]}
        else:
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
        self._schedule_flush()

    def announce(self, envelope: Envelope) -> None:
        """Publish an event that is already stored, with the next batch (within the
        flush window)."""
        self._unpublished.append(envelope)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.window_s)
        await self.flush()

    async def flush(self) -> None:
        """Store every pending event, then publish them; order is kept by the lock."""
        async with self._lock:
            if self._pending and not self.lost:
                batch, self._pending = self._pending, []
                if not await in_db_thread(store_events)(self.run_id, self.attempt, batch):
                    self._lose()
                    return
                metrics.events_emitted.inc(len(batch))
                self._unpublished += [envelope_of(e) for e in batch]
            await self._publish_stored()

    def _lose(self) -> None:
        self.lost = True
        self._pending, self._unpublished = [], []
        _log.warning("run_claim_lost", run_id=str(self.run_id), attempt=self.attempt)
        if self.on_lost is not None:
            self.on_lost()

    async def take_pending(self) -> list[RunEvent]:
        """Hand the events not yet stored to a writer that stores them in its own
        transaction (the run's finish); it then calls ``published_after_store``."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if self._timer is not None and not self._timer.done():
                self._timer.cancel()
            return batch

    async def published_after_store(self, stored: list[RunEvent]) -> None:
        """Publish events another writer has just stored, after everything before them."""
        async with self._lock:
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
        # Flush first: cancelling a timer that is in the middle of a flush would lose the
        # batch it holds. Once this flush is through, the timer has nothing left to do.
        await self.flush()
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
