"""Exactly-once, in-order delivery of a run's events to any number of viewers.

The event log is the truth and the channel layer only the doorbell (DESIGN section 6).
In each server process one ``RunFeed`` per watched run listens to the run's group,
puts the events in seq order, fills any jump in seq from the log (once per process, not
once per viewer) and fans the events out, serialised once, to every ``Subscription``.

A viewer (WebSocket, SSE, ``follow()``) subscribes first, then replays the log after its
``after``, then drains its subscription skipping seqs it already has. Events are stored
before they are published, so everything the feed delivered before the viewer joined is
in the log by the time the replay reads it, and the feed's sequence is contiguous: the
first live event past the replay is always the next seq.

A viewer's inbox is bounded. When it overflows the viewer is either reading but behind
(it catches up from the log) or not reading at all (its socket buffer is full; it is
closed as too slow and may resume with ``after``). Memory per viewer stays bounded either
way, and a slow viewer never holds up the feed or the other viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from agents.lifecycle import TERMINAL_EVENTS
from agents.models import run_group_name
from agents.runtime.events import Envelope
from agents.selectors import run_event_list
from monitoring import metrics

log = structlog.get_logger(__name__)

REPLAY_PAGE = 500
GAP_RETRIES = 5
GAP_RETRY_DELAY_S = 0.05
# A quiet doorbell may mean a lost publish (the layer drops, Redis restarts): after this
# long without a message the feed reads the log itself, backing off while it stays quiet.
IDLE_CHECK_FIRST_S = 1.0
IDLE_CHECK_MAX_S = 15.0


async def fetch_events(
    run_id: uuid.UUID | str, *, after: int, before: int | None = None, limit: int = REPLAY_PAGE
) -> list[Envelope]:
    return await sync_to_async(run_event_list)(run_id, after=after, before=before, limit=limit)


def last_event(run_id: uuid.UUID | str) -> tuple[int, str] | None:
    """(seq, type) of the last stored event of a run."""
    from agents.models import RunEvent

    return (
        RunEvent.objects.filter(run_id=run_id).order_by("-seq").values_list("seq", "type").first()
    )


class StreamCursor:
    """Where one reader of a run's events stands: the last seq it has taken."""

    def __init__(self, run_id: uuid.UUID | str, after: int = 0) -> None:
        self.run_id = run_id
        self.last_seq = after
        self.finished = False
        self.replayed = 0
        self.gap_filled = 0

    def take(self, envelope: Envelope) -> bool:
        """Advance past ``envelope`` if it is the next seq; False if it is not."""
        if self.finished or envelope["seq"] != self.last_seq + 1:
            return False
        self.last_seq = envelope["seq"]
        if envelope["type"] in TERMINAL_EVENTS:
            self.finished = True
        return True

    async def replay(self) -> list[Envelope]:
        """The next page of stored events after ``last_seq``."""
        page = await fetch_events(self.run_id, after=self.last_seq)
        out = [e for e in page if self.take(e)]
        self.replayed += len(out)
        return out

    async def replay_pages(self) -> AsyncIterator[list[Envelope]]:
        """Every stored event after ``last_seq``, page by page, up to the end of the log."""
        while not self.finished:
            page = await self.replay()
            if page:
                yield page
            elif not self.replayed:
                await self._finish_if_already_over()
            if len(page) < REPLAY_PAGE:
                return

    async def _finish_if_already_over(self) -> None:
        """A reader resuming at or after the terminal event has nothing left to wait for:
        it is finished now (the WebSocket closes with 1000), not after pings forever."""
        last = await sync_to_async(last_event)(self.run_id)
        if last is not None and last[1] in TERMINAL_EVENTS and last[0] <= self.last_seq:
            self.finished = True

    async def replay_all(self) -> list[Envelope]:
        out: list[Envelope] = []
        async for page in self.replay_pages():
            out.extend(page)
        return out

    async def accept(self, events: Iterable[Envelope]) -> list[Envelope]:
        """Live events in (maybe unordered, repeated or with gaps); the ones to pass on."""
        out: list[Envelope] = []
        for envelope in sorted(events, key=lambda e: e["seq"]):
            if self.finished or envelope["seq"] <= self.last_seq:
                continue
            if envelope["seq"] > self.last_seq + 1:
                out.extend(await self.fill(envelope["seq"]))
            if self.take(envelope):
                out.append(envelope)
        return out

    async def fill(self, upto: int) -> list[Envelope]:
        """Stored events between ``last_seq`` and ``upto`` (a gap the doorbell left)."""
        out: list[Envelope] = []
        for attempt in range(GAP_RETRIES):
            page = await fetch_events(self.run_id, after=self.last_seq, before=upto)
            out.extend(e for e in page if self.take(e))
            if self.last_seq >= upto - 1:
                break
            await asyncio.sleep(GAP_RETRY_DELAY_S * (attempt + 1))
        self.gap_filled += len(out)
        return out


@dataclass(slots=True)
class Frame:
    """One event as every viewer gets it: serialised once, shared by all."""

    envelope: Envelope
    text: str

    @property
    def seq(self) -> int:
        return int(self.envelope["seq"])

    @classmethod
    def of(cls, envelope: Envelope) -> Frame:
        return cls(envelope, json.dumps(envelope, separators=(",", ":")))


class Overflow(Exception):
    """The subscription's inbox overflowed; live events since then were not kept."""


@dataclass(eq=False)
class Subscription:
    feed: RunFeed
    maxsize: int
    inbox: asyncio.Queue[Frame] = field(init=False)
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.inbox = asyncio.Queue(self.maxsize)

    def offer(self, frames: list[Frame]) -> None:
        """Called by the feed; never blocks, so one viewer cannot stall the others."""
        if self.overflowed.is_set():
            return
        for frame in frames:
            try:
                self.inbox.put_nowait(frame)
            except asyncio.QueueFull:
                self.overflowed.set()
                return

    async def next(self, timeout: float, limit: int = 64) -> list[Frame] | None:
        """The queued live events (at least one, at most ``limit``), None after
        ``timeout`` of silence; raises Overflow."""
        if self.overflowed.is_set():
            raise Overflow
        if self.inbox.empty():
            # asyncio.timeout, not wait_for: no extra task per idle viewer (memory per
            # idle connection is a benchmarked budget).
            try:
                async with asyncio.timeout(timeout):
                    first = await self.inbox.get()
            except TimeoutError:
                if self.overflowed.is_set():
                    raise Overflow from None
                return None
            frames = [first]
        else:
            frames = []
        while len(frames) < limit and not self.inbox.empty():
            frames.append(self.inbox.get_nowait())
        return frames

    def restart(self) -> None:
        """Forget what was queued; the viewer catches up from the log instead."""
        while not self.inbox.empty():
            self.inbox.get_nowait()
        self.overflowed.clear()

    def close(self) -> None:
        self.feed.remove(self)


class RunFeed:
    """The one listener to a run's group in this process, fanning out to subscriptions."""

    def __init__(self, hub: StreamHub, run_id: str) -> None:
        self.hub = hub
        self.run_id = run_id
        self.subscriptions: set[Subscription] = set()
        self.ready = asyncio.Event()
        self.cursor = StreamCursor(run_id)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def add(self, maxsize: int) -> Subscription:
        subscription = Subscription(self, maxsize)
        self.subscriptions.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self.stop()

    def stop(self) -> None:
        self.hub.forget(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def _run(self) -> None:
        layer = get_channel_layer()
        group = run_group_name(self.run_id)
        channel = await layer.new_channel()
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        pump = asyncio.get_running_loop().create_task(self._pump(layer, channel, inbox))
        try:
            await layer.group_add(group, channel)
            # Everything stored by now is covered by each viewer's replay, which starts
            # after ``ready``; from here on the feed delivers a contiguous sequence.
            await self._skip_to_end_of_log()
            self.ready.set()
            if self.cursor.finished:
                return
            await self._deliver_until_finished(inbox)
        except asyncio.CancelledError:
            return  # the hub stops a feed by cancelling it; the cleanup below still runs
        except Exception:
            log.exception("run_feed_failed", run_id=self.run_id)
        finally:
            self.ready.set()
            self.hub.forget(self)
            if not self.cursor.finished:
                # Viewers left on a feed that stopped catch up from the log and resubscribe.
                for subscription in self.subscriptions:
                    subscription.overflowed.set()
            pump.cancel()
            with contextlib.suppress(BaseException):
                await layer.group_discard(group, channel)

    async def _skip_to_end_of_log(self) -> None:
        last = await sync_to_async(last_event)(self.run_id)
        if last is not None:
            self.cursor.last_seq = last[0]
            self.cursor.finished = last[1] in TERMINAL_EVENTS

    async def _pump(self, layer: Any, channel: str, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        # A task of its own, so that waiting with a timeout never cancels the layer's
        # receive (the pub/sub layer unsubscribes a channel whose receive is cancelled).
        while True:
            inbox.put_nowait(await layer.receive(channel))

    async def _deliver_until_finished(self, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        idle_s = IDLE_CHECK_FIRST_S
        while not self.cursor.finished and self.subscriptions:
            try:
                message = await asyncio.wait_for(inbox.get(), idle_s)
            except TimeoutError:
                events = await self.cursor.replay_all()
                idle_s = min(idle_s * 2, IDLE_CHECK_MAX_S)
            else:
                events = await self.cursor.accept(message.get("events", []))
                idle_s = IDLE_CHECK_FIRST_S
            if events:
                frames = [Frame.of(e) for e in events]
                for subscription in list(self.subscriptions):
                    subscription.offer(frames)


class StreamHub:
    """This process's feeds, one per watched run."""

    def __init__(self) -> None:
        self.feeds: dict[str, RunFeed] = {}

    async def subscribe(self, run_id: uuid.UUID | str, maxsize: int | None = None) -> Subscription:
        """Join a run's live events; replay the log only after this returns."""
        key = str(run_id)
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = RunFeed(self, key)
            feed.start()
        subscription = feed.add(maxsize or max_pending_events())
        await feed.ready.wait()
        return subscription

    def forget(self, feed: RunFeed) -> None:
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]


def max_pending_events() -> int:
    """Live events a viewer may have queued before it counts as behind (references to
    shared frames: ~8 bytes each per viewer, plus the frames a lagging viewer retains)."""
    return int(settings.STREAM_MAX_PENDING_EVENTS)


_hubs: dict[asyncio.AbstractEventLoop, StreamHub] = {}


def hub() -> StreamHub:
    """The hub of the running loop (feeds and layer connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        for stale in [other for other in _hubs if other.is_closed()]:
            del _hubs[stale]
        found = _hubs[loop] = StreamHub()
    return found


class TooSlow(Exception):
    """The client stopped reading while events kept coming."""


class RunStream:
    """One viewer's exactly-once stream: replay after ``after``, then live.

    ``congested`` tells whether the client's socket is full (it is not reading); an
    inbox overflow then means "too slow", otherwise the viewer catches up from the log.
    """

    def __init__(self, run_id: uuid.UUID | str, after: int, transport: str) -> None:
        self.cursor = StreamCursor(run_id, after)
        self.transport = transport
        self.subscription: Subscription | None = None
        self.catching_up = False

    @property
    def finished(self) -> bool:
        return self.cursor.finished

    @property
    def last_seq(self) -> int:
        return self.cursor.last_seq

    async def open(self) -> None:
        self.subscription = await hub().subscribe(self.cursor.run_id)

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    async def replay(self) -> AsyncIterator[list[Frame]]:
        async for page in self.cursor.replay_pages():
            metrics.events_replayed.labels(transport=self.transport).inc(len(page))
            yield [Frame.of(e) for e in page]

    async def next(self, timeout: float, congested: Any) -> list[Frame] | None:
        """The next events to send, or None after ``timeout`` of silence.

        Raises TooSlow when the inbox overflowed while ``congested()`` is true; when it
        overflowed while the client keeps reading, the viewer catches up from the log,
        one page per call, so a lagging viewer never holds more than a page.
        """
        assert self.subscription is not None
        if self.catching_up:
            return await self._catch_up_page()
        try:
            frames = await self.subscription.next(timeout)
        except Overflow:
            if congested():
                raise TooSlow from None
            await self._start_catch_up()
            return await self._catch_up_page()
        if frames is None:
            return None
        out: list[Frame] = []
        for frame in frames:
            if frame.seq <= self.cursor.last_seq:
                continue
            if frame.seq > self.cursor.last_seq + 1:  # defensive: the feed is contiguous
                out.extend(Frame.of(e) for e in await self.cursor.fill(frame.seq))
            if self.cursor.take(frame.envelope):
                out.append(frame)
        return out

    async def _start_catch_up(self) -> None:
        assert self.subscription is not None
        feed_task = self.subscription.feed.task
        if feed_task is not None and feed_task.done():
            self.close()
            await self.open()
        else:
            self.subscription.restart()
        self.catching_up = True

    async def _catch_up_page(self) -> list[Frame]:
        page = await self.cursor.replay()
        if len(page) < REPLAY_PAGE or self.cursor.finished:
            self.catching_up = False
        metrics.events_replayed.labels(transport=self.transport).inc(len(page))
        return [Frame.of(e) for e in page]


async def follow(run_id: uuid.UUID | str, *, after: int = 0) -> AsyncIterator[Envelope]:
    """Yield a run's events from ``after`` to the terminal one, each exactly once.

    For in-process subscribers such as the ``run_agent`` command.
    """
    stream = RunStream(run_id, after, transport="follow")
    await stream.open()
    try:
        async for page in stream.replay():
            for frame in page:
                yield frame.envelope
        while not stream.finished:
            for frame in await stream.next(60.0, congested=lambda: False) or []:
                yield frame.envelope
    finally:
        stream.close()
