"""Faults with real processes: a worker killed mid-run, Redis going away, cancels.

The fault stack has its own database and its own Redis server (on a free port), so
killing things here cannot disturb other tests. The reaper runs every second (Celery beat)
and a run's heartbeat counts as stale after 3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import require_service
from tests.e2e.conftest import (
    PG_ADMIN_DSN,
    ROOT,
    Stack,
    _pg_available,
    base_env,
    daphne_args,
    free_port,
    seeded_stack,
    wait_ready,
    worker_args,
)
from tests.e2e.wsclient import read_stream

pytestmark = pytest.mark.e2e

LONG_INPUT = " ".join(f"item{i}" for i in range(120))  # ~2.4 s of streaming at 20 ms/word
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "blocked"}


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def redis_available() -> bool:
    try:
        return subprocess.run(["redis-server", "--version"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def private_stack(
    tmp_path: Path, *, beat: bool = True, db_owner: str | None = None, **settings: str
) -> Iterator[tuple[Stack, RedisServer]]:
    """daphne, a supervised worker and (with ``beat``) the reaper every second, on a
    database and a Redis server of their own; ``settings`` add to the environment.
    With ``db_owner`` (a role) the database is that role's and the stack connects as it."""
    require_service("PostgreSQL", _pg_available())
    require_service("redis-server binary", redis_available())
    redis = RedisServer(tmp_path)
    redis.start()
    db_name = f"switchyard_fault_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        owner = f' OWNER "{db_owner}"' if db_owner else ""
        conn.execute(f'CREATE DATABASE "{db_name}"{owner}')
    server = PG_ADMIN_DSN.rsplit("/", 1)[0]
    if db_owner:
        server = server.replace("://postgres@", f"://{db_owner}@")
    env = base_env(tmp_path)
    env.update(
        DATABASE_URL=f"{server}/{db_name}",
        REDIS_URL=redis.url,
        RUN_STALE_AFTER_S="3",
        REAPER_INTERVAL_S="1",
        RUN_MAX_ATTEMPTS="3",
    )
    env.update(settings)
    stack, port = seeded_stack(env)
    stack.start("daphne", daphne_args(port), tmp_path)
    start_worker(stack, tmp_path, "worker1")
    if beat:
        stack.start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "info",
                "-s",
                str(tmp_path / "beat-schedule"),
            ],
            tmp_path,
        )
    try:
        wait_ready(stack)
        yield stack, redis
    finally:
        stack.stop()
        redis.stop()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[tuple[Stack, RedisServer]]:
    with private_stack(tmp_path) as stack:
        yield stack


def start_worker(stack: Stack, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    """A worker under a restart loop, as systemd or `make run` runs it in production:
    Celery 5.7's worker can exit on a broker connection loss (kombu's Redis transport fails
    to ack a finished task), and a supervisor brings it back."""
    worker = " ".join(worker_args(concurrency=4, name=name))
    return stack.start(name, ["bash", "-c", f"while :; do {worker}; sleep 1; done"], tmp)


def create_run(stack: Stack, text: str) -> str:
    with stack.client() as client:
        response = client.post("/api/v1/agents/demo-assistant/runs/", json={"input": text})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def get_run(stack: Stack, run_id: str) -> dict[str, Any]:
    with stack.client() as client:
        return client.get(f"/api/v1/runs/{run_id}/").json()


def all_events(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    with stack.client() as client:
        return client.get(f"/api/v1/runs/{run_id}/events/", params={"limit": 1000}).json()["events"]


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def assert_discarding_gives_the_message_once(events: list[dict[str, Any]]) -> None:
    """docs/streaming.md: drop discard_from_seq <= seq < run.retrying's seq; then the
    deltas concatenate exactly to the completed messages."""
    kept: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "run.retrying":
            start = event["data"]["discard_from_seq"]
            assert event["data"]["attempt"] >= 2 and isinstance(start, int)
            kept = [e for e in kept if e["seq"] < start]
        kept.append(event)
    text = "".join(e["data"]["delta"] for e in kept if e["type"] == "message.delta")
    completed = [e["data"]["content"] for e in kept if e["type"] == "message.completed"]
    assert completed and text == "".join(completed)


def assert_gap_free(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_a_run_survives_its_worker_being_killed_mid_stream(
    fault_stack: tuple[Stack, RedisServer], tmp_path: Path
) -> None:
    stack, _ = fault_stack
    run_id = create_run(stack, LONG_INPUT)
    # Given the run is streaming on worker1
    wait_until(lambda: any(e["type"] == "message.delta" for e in all_events(stack, run_id)), 45)
    worker = next(
        p for p, log in zip(stack.procs, stack.logs, strict=True) if log.name == "worker1.log"
    )
    # When the worker is killed outright, and another one is available
    os.killpg(worker.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    start_worker(stack, tmp_path, "worker2")
    # Then the run still reaches a terminal state within a few reaper intervals
    run = wait_until(lambda: (r := get_run(stack, run_id))["status"] in TERMINAL and r, timeout=60)
    settle_s = time.monotonic() - killed_at
    events = all_events(stack, run_id)
    assert_gap_free(events)
    assert events[-1]["type"] in {"run.succeeded", "run.failed"}
    if run["status"] == "succeeded":
        assert any(e["type"] == "run.retrying" for e in events)
        assert run["attempt"] == 2
        # and a client applying run.retrying's discard_from_seq sees the text exactly once
        assert_discarding_gives_the_message_once(events)
        # usage is that of the attempt that finished, not both attempts added up
        assert run["usage"]["requests"] == 1
    else:
        assert run["error"]["code"] == "worker_lost"
    assert settle_s < 60


def test_a_run_survives_redis_going_away_for_a_few_seconds(
    fault_stack: tuple[Stack, RedisServer],
) -> None:
    stack, redis = fault_stack
    run_id = create_run(stack, LONG_INPUT)
    wait_until(lambda: any(e["type"] == "message.delta" for e in all_events(stack, run_id)), 45)
    redis.stop()
    time.sleep(3)
    redis.start()  # same port, empty: whatever was queued in Redis is gone
    run = wait_until(lambda: (r := get_run(stack, run_id))["status"] in TERMINAL and r, 60)
    events = all_events(stack, run_id)
    assert_gap_free(events)
    assert run["status"] in {"succeeded", "failed"}
    assert events[-1]["type"] in {"run.succeeded", "run.failed"}
    # And the stack keeps working afterwards
    later = create_run(stack, "What is 2+2?")
    done = wait_until(lambda: (r := get_run(stack, later))["status"] in TERMINAL and r, 60)
    assert done["status"] == "succeeded" and "4" in done["output"]


def test_cancel_over_rest_stops_a_streaming_run_promptly(
    fault_stack: tuple[Stack, RedisServer],
) -> None:
    stack, _ = fault_stack
    run_id = create_run(stack, LONG_INPUT)
    wait_until(lambda: any(e["type"] == "message.delta" for e in all_events(stack, run_id)), 45)
    with stack.client() as client:
        requested = time.monotonic()
        first = client.post(f"/api/v1/runs/{run_id}/cancel/")
    assert first.status_code in (200, 202)
    run = wait_until(lambda: (r := get_run(stack, run_id))["status"] == "cancelled" and r, 10)
    elapsed = time.monotonic() - requested
    events = all_events(stack, run_id)
    assert_gap_free(events)
    assert events[-1]["type"] == "run.cancelled"
    print(f"cancel request -> run.cancelled: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0, f"cancel took {elapsed:.2f} s"
    assert run["output"]  # partial output kept
    with stack.client() as client:
        again = client.post(f"/api/v1/runs/{run_id}/cancel/")
        assert (again.status_code, again.json()["status"]) == (200, "cancelled")


def test_cancel_over_the_websocket_ends_the_stream_with_run_cancelled(
    fault_stack: tuple[Stack, RedisServer],
) -> None:
    import json

    from websockets.asyncio.client import connect

    stack, _ = fault_stack
    run_id = create_run(stack, LONG_INPUT)

    async def watch_and_cancel() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        url = f"{stack.ws_url}/ws/runs/{run_id}/"
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with asyncio.timeout(20), connect(url, additional_headers=headers) as ws:
            async for raw in ws:
                message = json.loads(raw)
                if "seq" in message:
                    seen.append(message)
                if message.get("type") == "message.delta" and len(seen) == 4:
                    await ws.send(json.dumps({"type": "cancel"}))
        return seen

    seen = asyncio.run(watch_and_cancel())
    assert_gap_free(seen)
    assert seen[-1]["type"] == "run.cancelled"
    # A finished run cannot be cancelled again into something else
    assert (
        asyncio.run(read_stream(f"{stack.ws_url}/ws/runs/{run_id}/", token=stack.token)).events[-1][
            "type"
        ]
        == "run.cancelled"
    )
    assert ROOT.exists()
