"""Concurrency slots, idempotency under concurrent duplicates, the reaper, threads API."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.utils import timezone

from agents.lifecycle import TERMINAL
from agents.models import Run, RunEvent
from agents.runtime.executors import remember_server_loop
from agents.services import run_create, run_transition, runs_reap

pytestmark = pytest.mark.django_db(transaction=True)


@pytest_asyncio.fixture
async def in_process(settings: Any) -> Any:
    """The real in-process executor, on this test's event loop."""
    settings.RUN_EXECUTOR = "inprocess"
    settings.DEMO_MODEL_DELAY_MS = 5
    remember_server_loop(asyncio.get_running_loop())
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


async def wait_terminal(run_ids: list[Any], timeout: float = 30) -> list[Run]:
    async with asyncio.timeout(timeout):
        while True:
            runs = [r async for r in Run.objects.filter(pk__in=run_ids).order_by("created_at")]
            if all(r.status in TERMINAL for r in runs):
                return runs
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_runs_beyond_the_concurrency_limit_wait_and_start_in_order(
    in_process: None, alice: Any, demo_agent: Any
) -> None:
    # Given an agent that may run one run at a time
    demo_agent.max_concurrent_runs = 1
    await demo_agent.asave()
    # When four runs are created at once
    text = " ".join(f"w{i}" for i in range(20))
    ids = []
    for _ in range(4):
        run, _ = await sync_to_async(run_create)(agent=demo_agent, owner=alice, input=text)
        ids.append(run.id)
    # Then none is rejected, they never overlap, and they start in creation order
    runs = await wait_terminal(ids)
    assert [r.status for r in runs] == ["succeeded"] * 4
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier.finished_at <= later.started_at
    assert [r.id for r in sorted(runs, key=lambda r: r.started_at)] == ids


def test_concurrent_duplicates_with_one_idempotency_key_create_one_run(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        from django.db import connection

        barrier.wait()
        try:
            run, created = run_create(
                agent=demo_agent, owner=alice, input="once", idempotency_key="same-key"
            )
            results.append((run.id, created))
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Run.objects.filter(owner=alice, idempotency_key="same-key").count() == 1


def _running_with_stale_heartbeat(agent: Any, owner: Any, attempt: int) -> Run:
    run, _ = run_create(agent=agent, owner=owner, input="x", enqueue=False)
    run_transition(run_id=run.id, to="running", started_at=timezone.now(), attempt=attempt)
    Run.objects.filter(pk=run.id).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    return run


def test_the_reaper_requeues_a_run_whose_worker_was_lost(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueued: list[Any] = []
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", enqueued.append)
    run = _running_with_stale_heartbeat(demo_agent, alice, attempt=1)
    counts = runs_reap(stale_after_s=30, max_attempts=2)
    run.refresh_from_db()
    assert counts["requeued"] == 1 and run.status == "queued"
    assert enqueued == [run.id]
    types = list(RunEvent.objects.filter(run=run).values_list("type", flat=True))
    assert types == ["run.queued", "run.started", "run.retrying"]


def test_the_reaper_fails_a_run_that_ran_out_of_attempts_with_worker_lost(
    alice: Any, demo_agent: Any
) -> None:
    run = _running_with_stale_heartbeat(demo_agent, alice, attempt=2)
    assert runs_reap(stale_after_s=30, max_attempts=2)["failed"] == 1
    run.refresh_from_db()
    assert (run.status, run.error_code) == ("failed", "worker_lost")
    last = RunEvent.objects.filter(run=run).order_by("-seq").first()
    assert last.type == "run.failed" and last.data["error"]["code"] == "worker_lost"


def test_a_reaper_pass_that_loses_the_requeue_race_leaves_the_run_alone(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stale run that another reaper pass requeues just before this one does (as
    # after a database stall that held several passes back)
    from agents import services

    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)
    run = _running_with_stale_heartbeat(demo_agent, alice, attempt=1)
    real = services.run_transition
    raced: list[bool] = []

    def other_pass_first(**kwargs: Any) -> Any:
        if kwargs.get("to") == "queued" and not raced:
            raced.append(True)
            real(run_id=run.id, to="queued", event_data={"attempt": 2})
        return real(**kwargs)

    monkeypatch.setattr(services, "run_transition", other_pass_first)
    # When this pass acts on what it read
    counts = services.runs_reap(stale_after_s=30, max_attempts=3)
    # Then it neither requeues it again nor fails it: attempts were left
    run.refresh_from_db()
    assert raced and run.status == "queued"
    assert counts["requeued"] == 0 and counts["failed"] == 0
    types = list(RunEvent.objects.filter(run=run).values_list("type", flat=True))
    assert types == ["run.queued", "run.started", "run.retrying"]


def test_the_reaper_leaves_live_runs_alone_and_settles_stale_cancels(
    alice: Any, demo_agent: Any
) -> None:
    live, _ = run_create(agent=demo_agent, owner=alice, input="x", enqueue=False)
    run_transition(run_id=live.id, to="running", heartbeat_at=timezone.now())
    stale = _running_with_stale_heartbeat(demo_agent, alice, attempt=1)
    run_transition(run_id=stale.id, to="cancelling")
    counts = runs_reap(stale_after_s=30, max_attempts=2)
    live.refresh_from_db()
    stale.refresh_from_db()
    assert live.status == "running"
    assert stale.status == "cancelled" and counts["cancelled"] == 1


def test_reap_runs_command_prints_its_counts(alice: Any, demo_agent: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    _running_with_stale_heartbeat(demo_agent, alice, attempt=5)
    out = StringIO()
    call_command("reap_runs", "--stale-after", "30", stdout=out)
    assert "failed=1" in out.getvalue()


def test_threads_are_created_and_used_over_the_api(
    alice_api: Any, charlie_api: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)
    thread = alice_api.post("/api/v1/threads/", {"agent": "demo-assistant"}, format="json")
    assert thread.status_code == 201
    thread_id = thread.json()["id"]
    run = alice_api.post(
        "/api/v1/agents/demo-assistant/runs/",
        {"input": "hi", "thread": thread_id, "limits": {"max_requests": 3}},
        format="json",
    )
    assert run.status_code == 201
    assert run.json()["thread"] == thread_id
    assert run.json()["limits"]["max_requests"] == 3
    runs = alice_api.get(f"/api/v1/threads/{thread_id}/").json()["runs"]
    assert [r["id"] for r in runs] == [run.json()["id"]]
    # charlie can neither see nor use alice's thread
    assert charlie_api.get(f"/api/v1/threads/{thread_id}/").status_code == 404
    foreign = charlie_api.post(
        "/api/v1/agents/demo-assistant/runs/", {"input": "x", "thread": thread_id}, format="json"
    )
    assert foreign.status_code == 404
    too_high = alice_api.post(
        "/api/v1/agents/demo-assistant/runs/",
        {"input": "x", "limits": {"max_requests": 10_000}},
        format="json",
    )
    assert too_high.status_code == 400
    assert too_high.json()["error"]["code"] == "invalid_limits"


def test_the_reaper_resends_a_queued_run_only_once_its_message_can_be_lost(
    alice: Any, demo_agent: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two queued runs handed over to the broker: one just now (its message is in
    # the queue, or held by a worker waiting for room), one long before the broker would
    # have given a dead worker's message back
    settings.RUN_RESEND_AFTER_S = 60
    sent: list[Any] = []
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", sent.append)
    waiting, _ = run_create(agent=demo_agent, owner=alice, input="x")
    lost, _ = run_create(agent=demo_agent, owner=alice, input="y")
    old = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk__in=[waiting.id, lost.id]).update(created_at=old)
    Run.objects.filter(pk=lost.id).update(dispatched_at=old)
    sent.clear()
    # When the reaper passes twice
    first = runs_reap(stale_after_s=15)
    second = runs_reap(stale_after_s=15)
    # Then only the lost one was sent again, and only once
    assert sent == [lost.id]
    assert (first["kicked"], second["kicked"]) == (1, 0)
