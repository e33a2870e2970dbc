"""No run executes twice: heartbeats a busy loop cannot starve, and fencing by attempt.

The provider is the fake server at the network edge; its request log is the bill a
second execution would run up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connection, connections

from agents.lifecycle import RunStatus
from agents.models import ModelCall, Run, RunEvent
from agents.runtime import execute_run, watch
from agents.services import run_create, run_transition, runs_reap
from tests.agents.test_runtime import make_agent
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _close_executor_connections() -> Any:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the reaper hands back to the executor (nothing starts it here)."""
    sent: list[Any] = []
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", sent.append)
    return sent


async def wait_for(predicate: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await sync_to_async(predicate)():
            await asyncio.sleep(0.02)


async def test_a_loop_stalled_past_the_stale_limit_keeps_its_run_and_calls_the_provider_once(
    fake_provider: FakeProviderServer,
    alice: Any,
    enqueued: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run streaming from the provider, with heartbeats due every 0.2 s
    monkeypatch.setattr(watch, "HEARTBEAT_EVERY_S", 0.2)
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(Scenario(text=" ".join(["word"] * 30), chunk_delay_s=0.03))
    run, _ = await sync_to_async(run_create)(agent=agent, owner=alice, input="go", enqueue=False)
    task = asyncio.create_task(execute_run(run.id))
    await wait_for(RunEvent.objects.filter(run=run, type="message.delta").exists)
    # When the event loop is stalled for 3.5 s (as a thousand busy runs can stall it) and
    # the reaper, with a 1.5 s stale limit, looks at the run late in the stall
    reaped: list[dict[str, int]] = []

    def reap() -> None:
        try:
            reaped.append(runs_reap(stale_after_s=1.5))
        finally:
            connection.close()

    reaper = threading.Timer(3.0, reap)
    reaper.start()
    time.sleep(2.5)
    reaper.join()
    # Then the run was never taken for dead: not re-queued, one provider request, done
    assert reaped and reaped[0]["requeued"] == 0
    assert await task == RunStatus.SUCCEEDED
    assert enqueued == []
    assert len(fake_provider.requests) == 1
    events = [e async for e in RunEvent.objects.filter(run=run).order_by("seq")]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events].count("run.started") == 1


@pytest.mark.parametrize("watch_interval_s", [watch.WATCH_INTERVAL_S, 30.0])
async def test_an_attempt_that_lost_its_claim_stops_before_its_next_call_and_write(
    fake_provider: FakeProviderServer,
    alice: Any,
    enqueued: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    watch_interval_s: float,
) -> None:
    # Given a run whose first model response (a tool call) streams slowly; with a 30 s
    # watch interval only the fences on writes and provider calls can stop it
    monkeypatch.setattr(watch, "WATCH_INTERVAL_S", watch_interval_s)
    agent = await sync_to_async(make_agent)(fake_provider)
    tool = {"kind": "tool_call", "tool_name": "calculator", "tool_args": {"expression": "6*7"}}
    fake_provider.script(
        Scenario(**tool, args_chunk_chars=2, chunk_delay_s=0.1),
        Scenario(**tool),
        Scenario(text="It is 42"),
    )
    run, _ = await sync_to_async(run_create)(agent=agent, owner=alice, input="6*7?", enqueue=False)
    first = asyncio.create_task(execute_run(run.id))
    await wait_for(lambda: len(fake_provider.requests) == 1)
    # When the reaper re-queues it in the middle of that stream (its heartbeat looked
    # stale), as it does for a worker it takes for lost
    assert await sync_to_async(run_transition)(
        run_id=run.id, to=RunStatus.QUEUED, event_data={"attempt": 2}
    )
    # Then the first attempt stops without another provider request or event
    assert await first is None
    assert len(fake_provider.requests) == 1
    last = await RunEvent.objects.filter(run=run).order_by("-seq").afirst()
    assert last.type == "run.retrying"
    # but its model call is in the ledger: the provider billed it
    assert await ModelCall.objects.filter(run=run, attempt=1).acount() == 1
    # And the next attempt runs the whole run once, with a gap-free log
    assert await execute_run(run.id) == RunStatus.SUCCEEDED
    assert len(fake_provider.requests) == 3
    final = await Run.objects.aget(pk=run.id)
    assert final.attempt == 2 and final.output == "It is 42"
    events = [e async for e in RunEvent.objects.filter(run=run).order_by("seq")]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events].count("run.succeeded") == 1
