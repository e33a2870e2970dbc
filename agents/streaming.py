"""Exactly-once, in-order delivery of a run's events over an unreliable doorbell.

Subscribers (the WebSocket consumer, ``run_agent``) join the run's group first, replay
the log after the client's ``after``, then take live events through ``accept``: seqs
already sent are skipped, and a jump in seq is filled from the log before sending on.
Events are stored before they are published, so a gap can always be filled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from agents.lifecycle import TERMINAL_EVENTS
from agents.models import run_group_name
from agents.runtime.events import Envelope
from agents.selectors import events_after

REPLAY_PAGE = 500
GAP_RETRIES = 5
GAP_RETRY_DELAY_S = 0.05


async def fetch_events(
    run_id: uuid.UUID | str, *, after: int, before: int | None = None, limit: int = REPLAY_PAGE
) -> list[Envelope]:
    return await sync_to_async(events_after)(run_id, after=after, before=before, limit=limit)


class StreamCursor:
    def __init__(self, run_id: uuid.UUID | str, after: int = 0) -> None:
        self.run_id = run_id
        self.last_seq = after
        self.finished = False
        self.replayed = 0
        self.gap_filled = 0

    def _take(self, envelope: Envelope) -> bool:
        if envelope["seq"] != self.last_seq + 1:
            return False
        self.last_seq = envelope["seq"]
        if envelope["type"] in TERMINAL_EVENTS:
            self.finished = True
        return True

    async def replay(self) -> list[Envelope]:
        """Everything stored after ``last_seq`` (the first page; call again while full)."""
        page = await fetch_events(self.run_id, after=self.last_seq)
        out = [e for e in page if self._take(e)]
        self.replayed += len(out)
        return out

    async def replay_all(self) -> list[Envelope]:
        out: list[Envelope] = []
        while True:
            page = await self.replay()
            out.extend(page)
            if len(page) < REPLAY_PAGE or self.finished:
                return out

    async def accept(self, events: Iterable[Envelope]) -> list[Envelope]:
        """Live events in; the ones to send out, in order, each exactly once."""
        out: list[Envelope] = []
        for envelope in sorted(events, key=lambda e: e["seq"]):
            if self.finished or envelope["seq"] <= self.last_seq:
                continue
            if envelope["seq"] > self.last_seq + 1:
                filled = await self._fill(envelope["seq"])
                out.extend(filled)
            if self._take(envelope):
                out.append(envelope)
        return out

    async def _fill(self, upto: int) -> list[Envelope]:
        out: list[Envelope] = []
        for attempt in range(GAP_RETRIES):
            page = await fetch_events(self.run_id, after=self.last_seq, before=upto)
            out.extend(e for e in page if self._take(e))
            if self.last_seq >= upto - 1:
                break
            await asyncio.sleep(GAP_RETRY_DELAY_S * (attempt + 1))
        self.gap_filled += len(out)
        return out


async def follow(
    run_id: uuid.UUID | str, *, after: int = 0, idle_poll_s: float = 1.0
) -> AsyncIterator[Envelope]:
    """Yield a run's events from ``after`` to the terminal one, each exactly once.

    For in-process subscribers (``run_agent``). When the doorbell stays quiet for
    ``idle_poll_s`` the log is read anyway, so a lost publish only costs that long.
    """
    layer = get_channel_layer()
    cursor = StreamCursor(run_id, after)
    channel = await layer.new_channel()
    group = run_group_name(run_id)
    await layer.group_add(group, channel)
    try:
        for envelope in await cursor.replay_all():
            yield envelope
        while not cursor.finished:
            try:
                message = await asyncio.wait_for(layer.receive(channel), idle_poll_s)
                batch = await cursor.accept(message.get("events", []))
            except TimeoutError:
                batch = await cursor.replay_all()
            for envelope in batch:
                yield envelope
    finally:
        await layer.group_discard(group, channel)
