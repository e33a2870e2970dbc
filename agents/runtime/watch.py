"""Cancel watch and heartbeat for every run an event loop executes, from a thread.

One watcher per event loop asks once per tick for the whole set of its runs, in one
query: which were asked to cancel, and which this process no longer owns (re-queued by
the reaper, or claimed by another attempt: see fencing.py). Every ``HEARTBEAT_EVERY_S``
it also refreshes their heartbeats in one ``UPDATE``.

The watcher is a thread with its own database connection, not a task on the runtime
loop: with a thousand runs streaming, the loop can be busy for seconds at a time, and a
heartbeat queued behind that work made live runs look dead to the reaper (which then
started them a second time). The thread still wants proof that the loop lives: every
tick it posts a callback to the loop, and it stops beating once the loop has not run one
for ``RUN_LOOP_STALL_LIMIT_S``, so that a loop that is truly stuck has its runs
recovered by the reaper (the stuck attempt is fenced off if it ever wakes up).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import weakref
from typing import Any

import structlog
from django.conf import settings
from django.db import connection
from django.utils import timezone

from agents.lifecycle import ACTIVE, RunStatus
from agents.models import Run
from agents.runtime.fencing import owned_by

log = structlog.get_logger(__name__)

# How often the executor looks for cancel requests, and how often it proves it is alive.
WATCH_INTERVAL_S = 0.25
HEARTBEAT_EVERY_S = 2.0


def check_in(
    runs: dict[uuid.UUID, int], *, heartbeat: bool
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """(runs asked to cancel, runs this process no longer owns) among ``runs`` (run id ->
    attempt), refreshing the heartbeat of those still owned when asked."""
    owned = Run.objects.filter(owned_by(runs.items()), status__in=ACTIVE)
    if heartbeat:
        owned.update(heartbeat_at=timezone.now())
    rows = dict(owned.values_list("pk", "status"))
    cancelling = {run_id for run_id, status in rows.items() if status == RunStatus.CANCELLING}
    return cancelling, set(runs) - set(rows)


class RunWatch:
    """The runs of one event loop, and the one thread that watches them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.work: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self.attempts: dict[uuid.UUID, int] = {}
        self.cancelled: set[uuid.UUID] = set()  # by a cancel request, not by shutdown
        self.lost: set[uuid.UUID] = set()  # claim lost: stop without a word
        self.thread: threading.Thread | None = None
        self.last_beat = 0.0
        self.loop_seen = time.monotonic()
        self._lock = threading.Lock()
        self._wake = threading.Event()  # the last run left: end the thread now

    def hold(self, run_id: uuid.UUID, attempt: int) -> None:
        """Keep a claimed run's heartbeat fresh before it has work to cancel: from the
        claim, while it waits for the database to prepare it, to the end of its finish.
        A run waiting that long for a database thread is alive; without a beat the
        reaper took it for dead and started it a second time (bench_capacity)."""
        self._register(run_id, attempt, None)

    def add(self, run_id: uuid.UUID, work: asyncio.Task[Any], attempt: int = 1) -> None:
        """Watch a run's work: a cancel request or a lost claim cancels it."""
        self._register(run_id, attempt, work)

    def _register(self, run_id: uuid.UUID, attempt: int, work: asyncio.Task[Any] | None) -> None:
        with self._lock:
            if work is not None:
                self.work[run_id] = work
            self.attempts[run_id] = attempt
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._watch, name="switchyard-run-watch", daemon=True
                )
                self.thread.start()

    def detach(self, run_id: uuid.UUID) -> str | None:
        """Stop watching the run's work, keep its heartbeat (it still has to finish);
        "cancelled" if the work was cancelled on request, "lost" if because its claim
        was lost, else None."""
        with self._lock:
            self.work.pop(run_id, None)
        return self._why_stopped(run_id)

    def discard(self, run_id: uuid.UUID) -> str | None:
        """Stop watching the run altogether (it has finished); as ``detach``."""
        with self._lock:
            self.work.pop(run_id, None)
            self.attempts.pop(run_id, None)
            if not self.attempts:
                self._wake.set()
        return self._why_stopped(run_id)

    def _why_stopped(self, run_id: uuid.UUID) -> str | None:
        if run_id in self.lost:
            self.lost.discard(run_id)
            return "lost"
        if run_id in self.cancelled:
            self.cancelled.discard(run_id)
            return "cancelled"
        return None

    def lose(self, run_id: uuid.UUID) -> None:
        """Stop a run whose claim is gone (called on the loop)."""
        self._stop(set(), {run_id})

    def _stop(self, cancelling: set[uuid.UUID], lost: set[uuid.UUID]) -> None:
        for run_id in cancelling | lost:
            work = self.work.get(run_id)
            if work is not None and not work.done():
                (self.lost if run_id in lost else self.cancelled).add(run_id)
                work.cancel("claim lost" if run_id in lost else "cancel requested")

    def _seen(self) -> None:
        self.loop_seen = time.monotonic()

    def _watch(self) -> None:
        try:
            while self._tick():
                self._wake.wait(WATCH_INTERVAL_S)
                self._wake.clear()
        finally:
            connection.close()

    def _tick(self) -> bool:
        """One pass; False when the thread should end (no runs left, loop gone)."""
        with self._lock:
            runs = dict(self.attempts)
            if not runs or self.loop.is_closed():
                self.thread = None
                return False
        try:
            self.loop.call_soon_threadsafe(self._seen)
        except RuntimeError:  # the loop closed in between
            with self._lock:
                self.thread = None
            return False
        now = time.monotonic()
        loop_alive = now - self.loop_seen < settings.RUN_LOOP_STALL_LIMIT_S
        beat = loop_alive and now - self.last_beat >= HEARTBEAT_EVERY_S
        try:
            cancelling, lost = check_in(runs, heartbeat=beat)
        except Exception:  # a database blip must not end every run
            log.warning("run_watch_failed", runs=len(runs), exc_info=True)
            connection.close()
            return True
        if beat:
            self.last_beat = now
        if cancelling or lost:
            self.loop.call_soon_threadsafe(self._stop, cancelling, lost)
        return True


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunWatch] = (
    weakref.WeakKeyDictionary()
)


def run_watch() -> RunWatch:
    """The watch of the running event loop (a worker's runtime loop, or the ASGI server's)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = RunWatch(loop)
    return watch
