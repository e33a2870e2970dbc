"""The run watch: one cancel check (and heartbeat) per tick for all of a loop's runs."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.signals import connection_created

from agents.lifecycle import RunStatus
from agents.models import Run
from agents.runtime import execute_run, watch
from agents.runtime.engine import claim_run, run_claimed
from agents.services import run_cancel, run_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _close_executor_connections() -> Any:
    yield
    await sync_to_async(connections.close_all)()


class CheckInCounter:
    """Counts the watch's cancel checks on every connection opened while installed (the
    watch runs on a thread of its own, with its own connection)."""

    def __init__(self) -> None:
        self.checks: list[int] = []  # how many run ids each check asked about

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # The fencing checks of provider calls, and of the event writer's locking query
        fence = "LIMIT 1" in sql or "FOR NO KEY UPDATE" in sql
        if (
            "cancelling" in (params or ())
            and " IN (" in sql
            and sql.startswith("SELECT")
            and not fence
        ):
            asked = sum(isinstance(p, uuid.UUID) for p in params)
            if asked:  # not fair dispatch's claim, which counts owners' active runs
                self.checks.append(asked)
        return execute(sql, params, many, context)

    def install(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


@pytest.fixture
def counter() -> Any:
    counter = CheckInCounter()
    connections.close_all()  # so that every connection the runs use is a new one
    connection_created.connect(counter.install)
    yield counter
    connection_created.disconnect(counter.install)


async def start(agent: Any, owner: Any, words: int = 60) -> Run:
    text = " ".join(f"w{i}" for i in range(words))
    run, _ = await sync_to_async(run_create)(agent=agent, owner=owner, input=text, enqueue=False)
    return run


async def wait_status(run_ids: list[Any], status: str) -> None:
    async with asyncio.timeout(10):
        while await Run.objects.filter(pk__in=run_ids).exclude(status=status).aexists():
            await asyncio.sleep(0.02)


async def test_one_check_per_tick_covers_every_run_and_cancels_only_the_requested_one(
    settings: Any, alice: Any, demo_agent: Any, counter: CheckInCounter
) -> None:
    # Given three runs executing side by side on one loop, each lasting a few ticks
    settings.DEMO_MODEL_DELAY_MS = 25
    runs = [await start(demo_agent, alice) for _ in range(3)]
    began = time.monotonic()
    tasks = [asyncio.create_task(execute_run(run.id)) for run in runs]
    await wait_status([r.id for r in runs], RunStatus.RUNNING)
    # When a cancel is requested for one of them
    await asyncio.sleep(watch.WATCH_INTERVAL_S * 2)
    assert await sync_to_async(run_cancel)(run_id=runs[1].id) == "cancelling"
    # Then only that run ends cancelled; the others run on to success
    assert await asyncio.gather(*tasks) == ["succeeded", "cancelled", "succeeded"]
    elapsed = time.monotonic() - began
    # And the runs shared their checks: one query a tick for all, not one per run
    assert max(counter.checks) == 3
    ticks = elapsed / watch.WATCH_INTERVAL_S
    assert 1 <= len(counter.checks) <= ticks + 2, (len(counter.checks), ticks)


async def test_the_watch_keeps_the_heartbeat_of_a_running_run_fresh(
    settings: Any, monkeypatch: pytest.MonkeyPatch, alice: Any, demo_agent: Any
) -> None:
    # Given a heartbeat due on every tick, and a run that lasts several ticks
    monkeypatch.setattr(watch, "HEARTBEAT_EVERY_S", 0.0)
    settings.DEMO_MODEL_DELAY_MS = 25
    run = await start(demo_agent, alice)
    task = asyncio.create_task(execute_run(run.id))
    await wait_status([run.id], RunStatus.RUNNING)
    first = (await Run.objects.aget(pk=run.id)).heartbeat_at
    # When a few ticks pass
    await asyncio.sleep(watch.WATCH_INTERVAL_S * 3)
    # Then the heartbeat moved on while the run was still running
    current = await Run.objects.aget(pk=run.id)
    assert current.status == RunStatus.RUNNING
    assert current.heartbeat_at > first
    assert await task == "succeeded"


async def test_a_finished_run_leaves_the_watch(settings: Any, alice: Any, demo_agent: Any) -> None:
    settings.DEMO_MODEL_DELAY_MS = 0
    run = await start(demo_agent, alice, words=3)
    assert await execute_run(run.id) == "succeeded"
    current = watch.run_watch()
    assert run.id not in current.work and not current.cancelled
    # Its watcher thread ends once it has nothing left to watch
    thread = current.thread
    if thread is not None:
        await asyncio.to_thread(thread.join, 2 * watch.WATCH_INTERVAL_S + 1)
        assert not thread.is_alive()


async def test_a_claimed_run_waiting_for_a_database_thread_keeps_its_heartbeat(
    settings: Any, monkeypatch: pytest.MonkeyPatch, alice: Any, demo_agent: Any
) -> None:
    # Given a claimed run, and the loop's database threads all busy (under load every
    # run's prepare and finish wait behind other runs' steps: bench_capacity saw 30 s)
    monkeypatch.setattr(watch, "HEARTBEAT_EVERY_S", 0.0)
    settings.DEMO_MODEL_DELAY_MS = 0
    run = await start(demo_agent, alice, words=3)
    claimed = await claim_run(run.id)
    assert claimed is not None
    first = (await Run.objects.aget(pk=run.id)).heartbeat_at
    loop = asyncio.get_running_loop()
    busy = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(busy)
    release = threading.Event()
    blocker = loop.run_in_executor(None, release.wait)
    try:
        # When the run starts, and its prepare waits for the one database thread
        task = asyncio.create_task(run_claimed(claimed))
        await asyncio.sleep(watch.WATCH_INTERVAL_S * 4)
        # Then the heartbeat moved on while it waited: the reaper sees it alive
        waiting = await Run.objects.aget(pk=run.id)
        assert waiting.status == RunStatus.RUNNING and waiting.output == ""
        assert waiting.heartbeat_at > first
    finally:
        release.set()
        await blocker
    assert await task == "succeeded"
    assert run.id not in watch.run_watch().attempts  # and it left the watch at the end
