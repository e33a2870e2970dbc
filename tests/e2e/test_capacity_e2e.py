"""Runs in flight bounded by WORKER_MAX_RUNS, not by the worker's threads.

A real daphne and Celery worker on their own database and queue; the provider is the fake
OpenAI server this test process runs (the network edge), whose request log shows how many
streams are open at once and how many times each run asked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import (
    PG_ADMIN_DSN,
    Stack,
    base_env,
    daphne_args,
    seeded_stack,
    wait_ready,
    worker_args,
)
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = pytest.mark.e2e

MAX_RUNS = 6
THREADS = 2  # fewer pool threads than runs in flight: threads do not bound runs


@pytest.fixture
def provider() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, provider: FakeProviderServer) -> Iterator[Stack]:
    with capacity_stack(tmp_path, redis_url, provider, WORKER_MAX_RUNS=str(MAX_RUNS)) as stack:
        yield stack


@contextlib.contextmanager
def capacity_stack(
    tmp_path: Path,
    redis_url: str,
    provider: FakeProviderServer,
    *,
    beat: bool = False,
    **settings: str,
) -> Iterator[Stack]:
    """daphne and one worker on their own database and queue, the agent ``slow`` on the
    fake provider; with ``beat``, the reaper every second."""
    db_name = f"switchyard_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = base_env(tmp_path)
    env["DATABASE_URL"] = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db_name}"
    env["REDIS_URL"] = redis_url
    env["CHANNEL_PREFIX"] = env["CELERY_QUEUE"] = f"e2e{uuid.uuid4().hex[:6]}"
    env.update(
        RUN_STALE_AFTER_S="3",
        BROKER_VISIBILITY_TIMEOUT_S="5",
        RUN_RESEND_AFTER_S="8",
        REAPER_INTERVAL_S="1",
        **settings,
    )
    stack, port = seeded_stack(env)
    stack.manage(
        "shell",
        "-v0",
        "-c",
        "from agents.models import Agent, Provider;"
        "p, _ = Provider.objects.update_or_create(name='fake', defaults=dict(kind='openai',"
        f" base_url={provider.base_url!r}, max_retries=0, timeout_s=30));"
        "Agent.objects.update_or_create(slug='slow', defaults=dict(name='Slow', provider=p,"
        " model_name='gpt-4o', tools=[]))",
    )
    stack.start("daphne", daphne_args(port), tmp_path)
    start_worker(stack, tmp_path)
    if beat:
        schedule = str(tmp_path / "beat-schedule")
        stack.start("beat", [*CELERY, "beat", "-l", "info", "-s", schedule], tmp_path)
    try:
        wait_ready(stack)
        yield stack
    finally:
        stack.stop()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


CELERY = [sys.executable, "-m", "celery", "-A", "config"]


def start_worker(stack: Stack, tmp: Path, name: str = "worker", threads: int = THREADS) -> Any:
    queue = stack.env["CELERY_QUEUE"]
    return stack.start(name, worker_args(concurrency=threads, queue=queue, name=name), tmp)


def slow_answers(provider: FakeProviderServer, count: int, words: int) -> None:
    provider.script(
        *[Scenario(text=" ".join(["tok"] * words), chunk_delay_s=0.1) for _ in range(count)]
    )


def create_runs(stack: Stack, count: int, token: str | None = None, tag: str = "run") -> list[str]:
    with stack.client(token) as client:
        ids = []
        for i in range(count):
            response = client.post("/api/v1/agents/slow/runs/", json={"input": f"{tag} {i}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    return ids


def create_batch(stack: Stack, inputs: list[str]) -> list[str]:
    with stack.client() as client:
        body = {"inputs": [{"input": text} for text in inputs]}
        response = client.post("/api/v1/agents/slow/runs/batch/", json=body)
    assert response.status_code == 201, response.text
    return list(response.json()["runs"])


def states(stack: Stack, ids: list[str]) -> list[dict[str, Any]]:
    with stack.client() as client:
        return [client.get(f"/api/v1/runs/{run_id}/").json() for run_id in ids]


def events(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    with stack.client() as client:
        return client.get(f"/api/v1/runs/{run_id}/events/", params={"limit": 1000}).json()["events"]


def test_a_worker_holds_up_to_worker_max_runs_whatever_its_thread_count(
    stack: Stack, provider: FakeProviderServer
) -> None:
    # Given a worker with 2 pool threads and WORKER_MAX_RUNS=6, and runs of ~2 s each
    slow_answers(provider, 15, words=20)
    # When 15 runs are submitted at once
    ids = create_runs(stack, 15)
    peak, deadline = 0, time.monotonic() + 90
    while time.monotonic() < deadline:
        peak = max(peak, provider.active_streams)
        current = states(stack, ids)
        if all(r["status"] == "succeeded" for r in current):
            break
        time.sleep(0.1)
    # Then more runs than threads streamed at once, never more than the limit, all done
    assert [r["status"] for r in states(stack, ids)] == ["succeeded"] * 15
    assert THREADS < peak <= MAX_RUNS, peak
    assert len(provider.requests) == 15


def send_control_task(stack: Stack, name: str) -> str:
    """Publish a control task as beat does (to the stack's control queue); its task id."""
    from celery import Celery

    queue = f"{stack.env['CELERY_QUEUE']}.control"
    app = Celery("e2e-publisher", broker=stack.env["REDIS_URL"])
    try:
        return str(app.send_task(name, queue=queue, routing_key=queue, exchange=queue).id)
    finally:
        app.close()


def task_started(stack: Stack, task_id: str) -> bool:
    """The worker's log says the task started (django-structlog's task_started line)."""
    log = next(p for p in stack.logs if p.name == "worker.log")
    return any(task_id in line and "task_started" in line for line in log.read_text().splitlines())


def test_a_control_task_is_served_while_every_slot_is_full(
    stack: Stack, provider: FakeProviderServer
) -> None:
    # Given a worker whose 6 slots all hold runs that stream for ~10 s, with more runs
    # queued behind them (a pool thread waits for a slot, the other keeps handing back)
    slow_answers(provider, 10, words=100)
    ids = create_runs(stack, 10)
    deadline = time.monotonic() + 30
    while provider.active_streams < MAX_RUNS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.active_streams == MAX_RUNS
    # When beat's reaper pass arrives on the control queue
    task_id = send_control_task(stack, "agents.reap_runs")
    # Then the worker runs it while the slots are still full of the first runs
    while not task_started(stack, task_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert task_started(stack, task_id), stack.tail_logs()
    assert provider.active_streams == MAX_RUNS
    assert len(provider.requests) == MAX_RUNS  # none of the queued runs started yet
    assert sum(r["status"] == "queued" for r in states(stack, ids)) == 10 - MAX_RUNS


def test_behind_a_flood_another_owners_run_starts_before_most_of_it(
    stack: Stack, provider: FakeProviderServer
) -> None:
    # Given owner A's flood of 40 runs (~1.5 s each) on a worker with 6 slots
    owner_b = stack.user_token("owner-b")
    slow_answers(provider, 41, words=15)
    flood = create_runs(stack, 40, tag="flood")
    # When owner B submits one run behind it
    (theirs,) = create_runs(stack, 1, token=owner_b, tag="theirs")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if all(r["status"] == "succeeded" for r in states(stack, [*flood, theirs])):
            break
        time.sleep(0.2)
    runs = {r["id"]: r for r in states(stack, [*flood, theirs])}
    assert all(r["status"] == "succeeded" for r in runs.values())
    # Then B's run started before (nearly) all of A's runs that were still waiting
    b_created, b_started = at(runs[theirs]["created_at"]), at(runs[theirs]["started_at"])
    waiting = [r for r in flood if at(runs[r]["started_at"]) > b_created]
    after_b = [r for r in waiting if at(runs[r]["started_at"]) > b_started]
    assert len(waiting) >= 20, len(waiting)  # the flood was still there
    assert len(after_b) >= 0.8 * len(waiting), (len(after_b), len(waiting))


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def test_a_worker_killed_with_fifty_runs_in_flight_loses_none_and_runs_none_twice(
    tmp_path: Path, redis_url: str, provider: FakeProviderServer
) -> None:
    from tests.e2e.test_chaos_e2e import kept, ledger_by_attempt
    from tests.e2e.test_faults_e2e import assert_discarding_gives_the_message_once

    settings = {"WORKER_MAX_RUNS": "50", "RUN_MAX_ATTEMPTS": "3"}
    with capacity_stack(tmp_path, redis_url, provider, beat=True, **settings) as stack:
        # Given 150 streaming runs (~4 s each) created at once (one batch: created one by
        # one on a loaded machine, the first had ended before the 45th started) and a
        # worker holding 50 of them
        slow_answers(provider, 400, words=40)
        ids = create_batch(stack, [f"kill {n}" for n in range(150)])
        deadline = time.monotonic() + 90
        while provider.active_streams < 45 and time.monotonic() < deadline:
            time.sleep(0.02)
        # When the worker is SIGKILLed with them in flight and another one starts
        worker = next(
            p for p, log in zip(stack.procs, stack.logs, strict=True) if log.name == "worker.log"
        )
        in_flight = provider.active_streams
        os.killpg(worker.pid, signal.SIGKILL)
        start_worker(stack, tmp_path, "worker2", threads=4)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if all(r["status"] == "succeeded" for r in states(stack, ids)):
                break
            time.sleep(0.5)
        runs = {r["id"]: r for r in states(stack, ids)}
        # Then every run succeeded, and the killed ones were retried
        assert in_flight >= 45
        assert [r["status"] for r in runs.values()] == ["succeeded"] * 150, stack.tail_logs()
        assert sum(r["attempt"] > 1 for r in runs.values()) >= 40
        asked: dict[str, list[dict[str, Any]]] = {}
        for request in provider.requests:
            asked.setdefault(last_user_text(request["json"]), []).append(request)
        for n, run_id in enumerate(ids):
            run, requests = runs[run_id], asked[f"kill {n}"]
            # the provider was asked at most once per attempt, never by two at once
            assert 1 <= len(requests) <= run["attempt"], (run_id, len(requests))
            for earlier, later in zip(requests, requests[1:], strict=False):
                assert earlier["ended"] <= later["time"], run_id
            log = events(stack, run_id)
            assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
            assert sum(e["type"] == "run.started" for e in log) == run["attempt"]
            assert sum(e["type"] == "run.succeeded" for e in log) == 1
            assert_discarding_gives_the_message_once(log)
            counted = [e["data"] for e in kept(log) if e["type"] == "usage"]
            assert len(counted) == 1
            ledger = ledger_by_attempt(stack, run_id)
            usage = run["usage"]
            assert ledger[run["attempt"]] == (usage["requests"], usage["input_tokens"]), ledger
        # and the usage API adds up each ledger row once
        rows = sum(n for r in ids for n, _ in ledger_by_attempt(stack, r).values())
        with stack.client() as client:
            usage = client.get("/api/v1/usage/", params={"group_by": "agent"}).json()["results"]
        assert sum(g["model_requests"] for g in usage) == rows


def last_user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content)
    return str(content)
