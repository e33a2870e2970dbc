"""The outside probe's fault scenarios, kept as tests (issue 11): Redis away for 8 s while
runs stream and while runs are created, daphne killed with clients streaming, the runs
table locked for 10 s, the database's connection limit reached.

Each runs against a stack with its own database and Redis server (tests/e2e/
test_faults_e2e.py's ``private_stack``), and asserts the same four things: every run
ends in a terminal state, its events are gap-free, its usage is counted once, and every
client that resumes after a disconnect (with ``after`` = the last seq it got) receives
every event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e.conftest import PG_ADMIN_DSN, Stack, daphne_args, wait_ready
from tests.e2e.test_faults_e2e import (
    TERMINAL,
    RedisServer,
    all_events,
    assert_discarding_gives_the_message_once,
    assert_gap_free,
    create_run,
    get_run,
    private_stack,
    wait_until,
)

pytestmark = pytest.mark.e2e

# ~8 s of streaming at 20 ms a word: long enough to be mid-run when a fault starts.
LONG_TEXT = " ".join(f"w{i}" for i in range(400))
TERMINAL_EVENTS = {f"run.{status}" for status in TERMINAL}


# --- Clients that resume, as docs/streaming.md tells them to ---------------------------


class ResumingViewer:
    """Watches one run over WebSocket; on any disconnect it reconnects with
    ``after`` = the last seq it received, until it has the terminal event."""

    def __init__(self, stack: Stack, run_id: str) -> None:
        self.stack = stack
        self.run_id = run_id
        self.events: list[dict[str, Any]] = []
        self.reconnects = 0

    async def watch(self, timeout: float = 150) -> ResumingViewer:
        headers = {"Authorization": f"Bearer {self.stack.token}"}
        async with asyncio.timeout(timeout):
            while not (self.events and self.events[-1]["type"] in TERMINAL_EVENTS):
                after = self.events[-1]["seq"] if self.events else 0
                url = f"{self.stack.ws_url}/ws/runs/{self.run_id}/?after={after}"
                # The server away or the stream broken: resume below.
                with contextlib.suppress(OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                    async with connect(
                        url, additional_headers=headers, open_timeout=5, max_queue=None
                    ) as ws:
                        async for raw in ws:
                            message = json.loads(raw)
                            if "seq" in message:
                                self.events.append(message)
                if not (self.events and self.events[-1]["type"] in TERMINAL_EVENTS):
                    self.reconnects += 1
                    await asyncio.sleep(0.5)
        return self


class Viewers:
    """Two resuming viewers per run, on their own event loop in a thread, so the test
    can break things while they watch."""

    def __init__(self, stack: Stack, run_ids: list[str]) -> None:
        self.viewers = [ResumingViewer(stack, r) for r in run_ids for _ in range(2)]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(v.watch() for v in self.viewers))

        try:
            asyncio.run(all_of_them())
        except Exception as exc:  # noqa: BLE001 - any failure is reported by join()
            self.error = exc

    def join(self, timeout: float = 170) -> list[ResumingViewer]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "viewers did not finish"
        if self.error is not None:
            raise AssertionError(f"a viewer failed: {self.error!r}")
        return self.viewers


def assert_outcome(stack: Stack, run_ids: list[str], viewers: list[ResumingViewer]) -> None:
    """Every run terminal, gap-free, usage once; every viewer saw the log exactly once."""
    for run_id in run_ids:
        run = wait_until(lambda r=run_id: (x := get_run(stack, r))["status"] in TERMINAL and x, 90)
        events = all_events(stack, run_id)
        assert_gap_free(events)
        assert events[-1]["type"] == f"run.{run['status']}"
        assert sum(e["type"] in TERMINAL_EVENTS for e in events) == 1
        if run["status"] == "succeeded":
            assert_discarding_gives_the_message_once(events)
            # usage once: the run's totals are those of the attempt that finished
            counted = [e["data"] for e in kept(events) if e["type"] == "usage"]
            assert len(counted) == 1, counted
            assert run["usage"]["input_tokens"] == counted[0]["input_tokens"]
            assert run["usage"]["output_tokens"] == counted[0]["output_tokens"]
            # and the ledger has that attempt's model calls once each
            ledger = ledger_by_attempt(stack, run_id)
            usage = run["usage"]
            assert ledger[run["attempt"]] == (usage["requests"], usage["input_tokens"]), ledger
        else:
            assert run["status"] == "failed" and run["error"]["code"] == "worker_lost", run
        for viewer in (v for v in viewers if v.run_id == run_id):
            seqs = [e["seq"] for e in viewer.events]
            assert seqs == list(range(1, len(events) + 1)), (viewer.reconnects, seqs[:50])
            assert viewer.events == events
    # and the usage API adds up each ledger row once
    ledger_rows = sum(n for r in run_ids for n, _ in ledger_by_attempt(stack, r).values())
    with stack.client() as client:
        usage = client.get("/api/v1/usage/", params={"group_by": "agent"}).json()["results"]
    assert sum(g["model_requests"] for g in usage) == ledger_rows


def ledger_by_attempt(stack: Stack, run_id: str) -> dict[int, tuple[int, int]]:
    """The run's cost-ledger rows: attempt -> (model calls, input tokens)."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT attempt, count(*), sum(input_tokens) FROM agents_modelcall"
            " WHERE run_id = %s::uuid GROUP BY attempt",
            (run_id,),
        ).fetchall()
    return {attempt: (calls, int(tokens)) for attempt, calls, tokens in rows}


def kept(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a client keeps after applying run.retrying's discard_from_seq."""
    result: list[dict[str, Any]] = []
    for event in events:
        start = event["data"].get("discard_from_seq") if event["type"] == "run.retrying" else None
        if start is not None:
            result = [e for e in result if e["seq"] < start]
        result.append(event)
    return result


def streaming(stack: Stack, run_ids: list[str]) -> None:
    """Wait until every run has streamed some text."""
    for run_id in run_ids:
        wait_until(
            lambda r=run_id: any(e["type"] == "message.delta" for e in all_events(stack, r)), 45
        )


def watched_streaming_runs(stack: Stack, count: int = 3) -> tuple[list[str], Viewers]:
    """``count`` long runs, each watched by two resuming clients, streaming already."""
    run_ids = [create_run(stack, LONG_TEXT) for _ in range(count)]
    viewers = Viewers(stack, run_ids)
    streaming(stack, run_ids)
    return run_ids, viewers


@pytest.fixture
def chaos_stack(tmp_path: Path) -> Iterator[tuple[Stack, RedisServer]]:
    with private_stack(tmp_path) as stack:
        yield stack


# --- The scenarios -----------------------------------------------------------------------


def test_redis_away_for_eight_seconds_mid_run_and_during_creation_loses_nothing(
    chaos_stack: tuple[Stack, RedisServer],
) -> None:
    stack, redis = chaos_stack
    # Given three streaming runs, each watched by two resuming clients
    run_ids, viewers = watched_streaming_runs(stack)
    # When Redis goes away for 8 s, and two runs are created meanwhile
    redis.stop()
    down_at = time.monotonic()
    created_while_down = [create_run(stack, "What is 6*7?") for _ in range(2)]
    with stack.client() as client:
        assert client.get("/readyz").status_code == 503  # the broker is reported down
    time.sleep(max(0.0, 8 - (time.monotonic() - down_at)))
    redis.start()  # same port, empty: queued messages and channel-layer state are gone
    # Then every run ends once, and every client saw every event exactly once
    late_viewers = Viewers(stack, created_while_down)
    assert_outcome(stack, run_ids + created_while_down, viewers.join() + late_viewers.join())
    for run_id in created_while_down:
        assert get_run(stack, run_id)["status"] == "succeeded"


def test_daphne_killed_with_clients_streaming_loses_nothing(
    chaos_stack: tuple[Stack, RedisServer], tmp_path: Path
) -> None:
    stack, _ = chaos_stack
    # Given runs on the worker, watched through daphne
    run_ids, viewers = watched_streaming_runs(stack)
    # When daphne is killed outright and comes back on the same port 3 s later
    daphne = stack.procs[0]
    os.killpg(daphne.pid, signal.SIGKILL)
    daphne.wait(timeout=10)
    time.sleep(3)
    port = int(stack.base_url.rsplit(":", 1)[1])
    stack.procs[0] = stack.start("daphne-2", daphne_args(port), tmp_path)
    wait_ready(stack)
    # Then the clients resumed where they were, and the runs went on
    watched = viewers.join()
    assert all(v.reconnects >= 1 for v in watched)
    assert_outcome(stack, run_ids, watched)


def test_the_runs_table_locked_for_ten_seconds_loses_nothing(
    chaos_stack: tuple[Stack, RedisServer],
) -> None:
    stack, _ = chaos_stack
    run_ids, viewers = watched_streaming_runs(stack)
    # When another session holds an exclusive lock on the runs table for 10 s
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        conn.execute("LOCK TABLE agents_run IN ACCESS EXCLUSIVE MODE")
        time.sleep(10)
        conn.rollback()
    # Then everything that waited carries on, and nothing ran or counted twice
    assert_outcome(stack, run_ids, viewers.join())


@pytest.fixture
def limited_stack(tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    """A stack whose database role may open at most 24 connections (superusers are not
    subject to connection limits, so the stack connects as a role of its own)."""
    role = f"sy_chaos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 24')
    try:
        with private_stack(tmp_path, db_owner=role) as (stack, _):
            yield stack, role
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_database_connection_limit_reached_loses_nothing(
    limited_stack: tuple[Stack, str],
) -> None:
    stack, _ = limited_stack
    run_ids, viewers = watched_streaming_runs(stack)
    # When something else takes every connection the role has left, for 6 s
    hogs: list[psycopg.Connection[Any]] = []
    with contextlib.ExitStack() as held:
        while True:
            try:
                hogs.append(held.enter_context(psycopg.connect(stack.env["DATABASE_URL"])))
            except psycopg.OperationalError as exc:
                assert "too many connections" in str(exc)
                break
        assert hogs, "the stack already used every connection"
        # Then the API answers without a server error meanwhile (it may shed load)
        statuses = []
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {stack.token}"}
            for _ in range(3):
                response = client.get("/api/v1/runs/", headers=headers)
                statuses.append(response.status_code)
        time.sleep(max(0.0, 6 - len(statuses)))
    assert all(s in (200, 503) for s in statuses), statuses
    # And once they are given back, every run ends once and every client saw it all
    late = create_run(stack, "What is 6*7?")
    assert_outcome(stack, [*run_ids, late], viewers.join())
