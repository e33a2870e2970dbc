"""Runs in flight bounded by WORKER_MAX_RUNS, not by the worker's threads.

A real daphne and Celery worker on their own database and queue; the provider is the fake
OpenAI server this test process runs (the network edge), whose request log shows how many
streams are open at once and how many times each run asked.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
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
    db_name = f"switchyard_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = base_env(tmp_path)
    env["DATABASE_URL"] = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db_name}"
    env["REDIS_URL"] = redis_url
    env["CHANNEL_PREFIX"] = env["CELERY_QUEUE"] = f"e2e{uuid.uuid4().hex[:6]}"
    env.update(
        WORKER_MAX_RUNS=str(MAX_RUNS),
        RUN_STALE_AFTER_S="3",
        BROKER_VISIBILITY_TIMEOUT_S="5",
        RUN_RESEND_AFTER_S="8",
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
    try:
        wait_ready(stack)
        yield stack
    finally:
        stack.stop()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def start_worker(stack: Stack, tmp: Path, name: str = "worker") -> Any:
    queue = stack.env["CELERY_QUEUE"]
    return stack.start(name, worker_args(concurrency=THREADS, queue=queue, name=name), tmp)


def slow_answers(provider: FakeProviderServer, count: int, words: int) -> None:
    provider.script(
        *[Scenario(text=" ".join(["tok"] * words), chunk_delay_s=0.1) for _ in range(count)]
    )


def create_runs(stack: Stack, count: int) -> list[str]:
    with stack.client() as client:
        ids = []
        for i in range(count):
            response = client.post("/api/v1/agents/slow/runs/", json={"input": f"run {i}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    return ids


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
