"""Cancel watch and heartbeat for every run an event loop executes, in one query a tick.

A watcher per run polled the database every 0.25 s for each run: at 20 concurrent runs
on a loaded machine that was ~80 small transactions a second per worker, more than the
runs themselves. One watcher per event loop asks once per tick for the whole set:
``SELECT id … WHERE id IN (…) AND status = 'cancelling'``, and refreshes every heartbeat
with one ``UPDATE`` every ``HEARTBEAT_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
import weakref
from typing import Any

import structlog
from django.utils import timezone

from agents.lifecycle import ACTIVE, RunStatus
from agents.models import Run
from agents.runtime.db import in_db_thread

log = structlog.get_logger(__name__)

# How often the executor looks for cancel requests, and how often it proves it is alive.
WATCH_INTERVAL_S = 0.25
HEARTBEAT_EVERY_S = 2.0


def check_in(run_ids: list[uuid.UUID], *, heartbeat: bool) -> set[uuid.UUID]:
    """The runs among ``run_ids`` whose cancel was requested, refreshing the heartbeat of
    all that are still active when asked (one query, or two)."""
    if heartbeat:
        Run.objects.filter(pk__in=run_ids, status__in=ACTIVE).update(heartbeat_at=timezone.now())
    cancelling = Run.objects.filter(pk__in=run_ids, status=RunStatus.CANCELLING)
    return set(cancelling.values_list("pk", flat=True))


class RunWatch:
    """The runs of one event loop, and the one task that watches them all."""

    def __init__(self) -> None:
        self.work: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self.cancelled: set[uuid.UUID] = set()  # by a cancel request, not by shutdown
        self.task: asyncio.Task[None] | None = None
        self.last_beat = time.monotonic()

    def add(self, run_id: uuid.UUID, work: asyncio.Task[Any]) -> None:
        self.work[run_id] = work
        if self.task is None or self.task.done():
            # A fresh context: the first run's log bindings must not label the watcher.
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._watch(), context=contextvars.Context())

    def discard(self, run_id: uuid.UUID) -> bool:
        """Stop watching; True if the run's work was cancelled on request."""
        self.work.pop(run_id, None)
        cancelled = run_id in self.cancelled
        self.cancelled.discard(run_id)
        return cancelled

    async def _watch(self) -> None:
        while self.work:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if not self.work:
                return
            beat = time.monotonic() - self.last_beat >= HEARTBEAT_EVERY_S
            try:
                cancelling = await in_db_thread(check_in)(list(self.work), heartbeat=beat)
            except Exception:  # a database blip must not end every run
                log.warning("run_watch_failed", runs=len(self.work), exc_info=True)
                continue
            if beat:
                self.last_beat = time.monotonic()
            for run_id in cancelling:
                work = self.work.get(run_id)
                if work is not None and not work.done():
                    self.cancelled.add(run_id)
                    work.cancel("cancel requested")


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunWatch] = (
    weakref.WeakKeyDictionary()
)


def run_watch() -> RunWatch:
    """The watch of the running event loop (a worker's runtime loop, or the ASGI server's)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = RunWatch()
    return watch
