"""Where a run executes: Celery workers, or an asyncio task inside the ASGI server.

``settings.RUN_EXECUTOR`` chooses; both end in the same ``execute_run`` coroutine.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import kombu.exceptions
import redis.exceptions
import structlog
from django.conf import settings

log = structlog.get_logger(__name__)

# What a refused broker publish raises: kombu wraps connection errors in its
# OperationalError; a dropped socket can still surface as redis' or the OS's own.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

TOKEN_PURGE_INTERVAL_S = 3600.0
_server_loop: asyncio.AbstractEventLoop | None = None
_inflight: set[asyncio.Task[Any]] = set()


def remember_server_loop(loop: asyncio.AbstractEventLoop, *, reaper: bool = False) -> None:
    """Called from inside the ASGI server (or a command's loop) so that synchronous views,
    which run in threads, can start runs on the loop that owns the channel layer.

    With ``reaper`` (the ASGI server, in-process mode) the loop also runs the periodic
    reaper that Celery beat runs in the distributed mode.
    """
    global _server_loop, _reaper_task, _dispatcher_task
    if _server_loop is loop:
        return
    _server_loop = loop
    if reaper and settings.RUN_EXECUTOR == "inprocess":
        _reaper_task = loop.create_task(_reap_periodically(), context=contextvars.Context())
    if reaper and settings.DISPATCH_INTERVAL_S > 0:
        _dispatcher_task = loop.create_task(_dispatch_periodically(), context=contextvars.Context())


_reaper_task: asyncio.Task[None] | None = None
# Periodic work of apps above agents (webhook dispatch), run after each reaper pass in the
# embedded mode as Celery beat runs it in the distributed one; apps register in ready().
periodic_hooks: list[Callable[[], Any]] = []
_dispatcher_task: asyncio.Task[None] | None = None


async def _dispatch_periodically() -> None:
    """Every server process rings again for runs whose hand-over failed (broker down), so
    they start seconds after the broker is back, not at the next reaper pass. Off the
    request threads (``thread_sensitive=False``): a refused publish waits out its retries."""
    from asgiref.sync import sync_to_async

    from agents.services import runs_dispatch

    dispatch = sync_to_async(runs_dispatch, thread_sensitive=False)
    while True:
        await asyncio.sleep(settings.DISPATCH_INTERVAL_S)
        try:
            sent = await dispatch()
            if sent:
                log.info("runs_dispatched", count=sent)
        except Exception:
            log.exception("dispatch_pass_failed")


async def _reap_periodically() -> None:
    from asgiref.sync import sync_to_async

    from agents.services import runs_reap
    from agents.token_services import tokens_purge_expired

    purged_at = 0.0
    while True:
        try:
            await sync_to_async(runs_reap)()
            for hook in periodic_hooks:
                await sync_to_async(hook)()
            if time.monotonic() - purged_at >= TOKEN_PURGE_INTERVAL_S:  # as beat does
                await sync_to_async(tokens_purge_expired)()
                purged_at = time.monotonic()
        except Exception:
            log.exception("reaper_pass_failed")
        await asyncio.sleep(settings.REAPER_INTERVAL_S)


def carried_log_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """What of the caller's log context the work it starts (a run, a Celery task) carries.

    The request id and user, so that ``grep <request id>`` over web and worker logs shows
    the whole story, and the publishing task's id as ``parent_task_id``. Nothing else:
    ``run_id`` and ``agent`` belong to the run being logged, not to the one that started
    it. Work started from inside a run (a finished run starting the next queued one of its
    agent) was not asked for by that run's request, so it names the run instead.
    """
    carried = {k: context[k] for k in ("request_id", "user_id") if k in context}
    for key in ("task_id", "parent_task_id"):
        if key in context:
            carried["parent_task_id"] = context[key]
            break
    if "run_id" in context:
        carried.pop("request_id", None)
        carried["started_by_run_id"] = context["run_id"]
    return carried


def enqueue_run(run_id: uuid.UUID) -> None:
    if settings.RUN_EXECUTOR == "celery":
        from agents.tasks import execute_run_task

        execute_run_task.delay(str(run_id))
        return
    _start_in_process(run_id)


def enqueue_runs(run_ids: list[uuid.UUID], *, sent: list[uuid.UUID]) -> None:
    """``enqueue_run`` for many runs; appends each one to ``sent`` once the broker took it
    (a broker error part-way leaves the rest owed). The Celery messages share one
    producer; measured, that is no faster than ``delay()`` per run (kombu's pool reuses
    the connection either way): each message is still one LPUSH round trip, ~0.35 ms,
    about half of a 1,000-input batch's time (tests/perf/bench_create.py)."""
    if settings.RUN_EXECUTOR == "celery":
        from agents.tasks import execute_run_task

        with execute_run_task.app.producer_or_acquire() as producer:
            for run_id in run_ids:
                execute_run_task.apply_async((str(run_id),), producer=producer)
                sent.append(run_id)
        return
    for run_id in run_ids:
        _start_in_process(run_id)
        sent.append(run_id)


def _start_in_process(run_id: uuid.UUID) -> None:
    from agents.runtime import execute_run

    loop = _server_loop
    if loop is None or loop.is_closed():
        raise RuntimeError("The in-process executor has no running event loop to start runs on.")
    # A fresh context: the caller's (a request thread's) would carry asgiref's "inside
    # sync_to_async" markers into the run. Of its log bindings only the request id goes.
    context = contextvars.Context()
    bindings = carried_log_context(structlog.contextvars.get_contextvars())
    context.run(structlog.contextvars.bind_contextvars, **bindings)

    def spawn() -> None:
        task = loop.create_task(execute_run(run_id), context=context)
        _inflight.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(_forget)

    loop.call_soon_threadsafe(spawn, context=contextvars.Context())


def _forget(task: asyncio.Task[Any]) -> None:
    _inflight.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("in_process_run_crashed", error=repr(task.exception()))


# --- Celery side: one long-lived loop per worker process ------------------------------
# channels_redis keeps its connection pools per event loop, so a new loop per run (or
# async_to_sync per publish) would open a fresh Redis connection every time.

_worker_loop: asyncio.AbstractEventLoop | None = None
_worker_lock = threading.Lock()


def _worker_event_loop() -> asyncio.AbstractEventLoop:
    global _worker_loop
    with _worker_lock:
        if _worker_loop is None or _worker_loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="switchyard-runtime-loop", daemon=True
            )
            thread.start()
            _worker_loop = loop
        return _worker_loop


def run_in_worker_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on this process's runtime loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, _worker_event_loop()).result()


# --- Admission: runs in flight bounded by WORKER_MAX_RUNS, not by threads ---------------
# A Celery task only admits a run: it waits for a free slot, claims the run (queued ->
# running, committed) and starts its execution as a task on the runtime loop, then
# returns, so the message is acknowledged once the database says the run is running.
# From then on the heartbeat and the reaper recover it if this process dies. A pool
# thread blocked on a full process holds one message it has not started; the worker
# therefore takes from the broker only while it has room (docs/runtime.md).

_slots: threading.BoundedSemaphore | None = None
_running: set[asyncio.Task[Any]] = set()
_drained = threading.Condition()

# A pool thread waiting for a slot holds the worker's prefetch of one message; were all
# of them waiting, the worker would fetch nothing more, control tasks included. So at most
# (pool threads - 1) wait as long as it takes; the last one waits HANDBACK_WAIT_S and then
# hands its message back to the queue, and the next fetch serves the control queue first.
HANDBACK_WAIT_S = 1.0
_pool_threads: int | None = None  # set at worker start (config/celery.py); None: unbounded
_waiting = 0


def set_pool_threads(count: int | None) -> None:
    """The worker's pool size: how many admissions may wait for a slot (count - 1)."""
    global _pool_threads
    _pool_threads = count


def _may_wait_unbounded() -> bool:
    """Take one of the (pool threads - 1) places for waiting as long as it takes."""
    global _waiting
    with _worker_lock:
        if _pool_threads is not None and _waiting >= _pool_threads - 1:
            return False
        _waiting += 1
        return True


def _acquire_slot(slots: threading.BoundedSemaphore) -> bool:
    """A slot, or False when this thread must keep itself free for control work."""
    global _waiting
    if slots.acquire(blocking=False):
        return True
    if not _may_wait_unbounded():
        return slots.acquire(timeout=HANDBACK_WAIT_S)
    try:
        return slots.acquire()
    finally:
        with _worker_lock:
            _waiting -= 1


def _worker_slots() -> threading.BoundedSemaphore:
    global _slots
    with _worker_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(settings.WORKER_MAX_RUNS)
        return _slots


def runs_in_flight() -> int:
    return len(_running)


class HandBack(Exception):
    """The process is full and this pool thread may not wait: the message goes back."""


def admit_run(run_id: str) -> bool:
    """Claim a queued run and start it on this process's runtime loop once a slot is
    free; True if it started (False: someone else has it, or it is not queued).

    Raises HandBack when no slot came free and this thread is the one kept for control
    work; the task then hands its message back to the queue.
    """
    from agents.runtime.engine import claim_run

    slots = _worker_slots()
    if not _acquire_slot(slots):
        raise HandBack(run_id)
    try:
        claimed = run_in_worker_loop(claim_run(run_id))
    except BaseException:
        slots.release()
        raise
    if claimed is None:
        slots.release()
        return False
    # The run's lines keep the task's log context (its task id, the request id that
    # published it), as they did when the run executed inside the task itself.
    context = contextvars.Context()
    context.run(structlog.contextvars.bind_contextvars, **structlog.contextvars.get_contextvars())
    loop = _worker_event_loop()
    loop.call_soon_threadsafe(
        _start_claimed, claimed, slots, context, context=contextvars.Context()
    )
    return True


def _start_claimed(
    claimed: Any, slots: threading.BoundedSemaphore, context: contextvars.Context
) -> None:
    from agents.runtime.engine import run_claimed

    task = asyncio.get_running_loop().create_task(run_claimed(claimed), context=context)
    _running.add(task)

    def done(task: asyncio.Task[Any]) -> None:
        _running.discard(task)
        slots.release()
        with _drained:
            _drained.notify_all()
        if not task.cancelled() and task.exception() is not None:
            log.error("worker_run_crashed", error=repr(task.exception()))

    task.add_done_callback(done)


def drain(timeout_s: float) -> int:
    """Wait (at a worker's warm shutdown) until this process's runs have finished, at
    most ``timeout_s``; returns how many are still in flight (the reaper recovers them)."""
    deadline = time.monotonic() + timeout_s
    with _drained:
        while _running and (left := deadline - time.monotonic()) > 0:
            _drained.wait(min(left, 1.0))
    return len(_running)
