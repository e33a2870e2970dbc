"""Benchmark: end-to-end runs through the REST API, Celery, PostgreSQL and Redis.

Starts its own stack (daphne, one Celery worker, a fresh PostgreSQL database, Redis), with
the demo model at zero delay, and drives it closed-loop at concurrency 1 and 20:

- runs/s, and latency p50/p99 from sending the POST to the run's terminal event;
- p50/p99 from the POST's response to ``run.started``;
- database commits per run (PostgreSQL's own ``xact_commit`` counter) and queries per run
  (Django's query log around one run executed in this process, the same code path);
- worker RSS after 200 runs and after 2,000 runs;
- the same runs through a bare pydantic-ai agent in one process, for the overhead ratio.

Run: ``make bench`` (all benchmarks) or ``.venv/bin/python tests/perf/bench_runs.py``.
Writes ``var/bench/runs.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from tests.perf.stacks import BenchSetup, bench_setup  # noqa: E402

PG_ADMIN = os.environ.get("E2E_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TOTAL_RUNS = int(os.environ.get("BENCH_RUNS", "2000"))
INPUT = "What is 12*7?"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the supervised worker's tree)."""
    total = 0
    for child in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        for kid in map(int, kids):
            found += [kid, *children(kid)]
    return found


class Poller:
    """Watches the runs table for terminal runs: one query per tick for all open runs.

    Latencies come from the events' own timestamps, so the tick only sets how soon a
    closed-loop client sends its next run; it shares the machine with the stack, so at
    concurrency 20 it ticks every 20 ms rather than every 5 ms.
    """

    def __init__(self, dsn: str, interval_s: float) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.queries = 0  # its own, to take out of the database's commit count

    async def run(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            while not stop.is_set():
                if self.waiting:
                    ids = list(self.waiting)
                    self.queries += 1
                    rows = await (
                        await conn.execute(
                            "SELECT r.id::text, r.status, "
                            " (SELECT extract(epoch from e.created_at) FROM agents_runevent e"
                            "   WHERE e.run_id = r.id AND e.type = 'run.started'),"
                            " (SELECT extract(epoch from max(e.created_at)) FROM agents_runevent e"
                            "   WHERE e.run_id = r.id) "
                            "FROM agents_run r WHERE r.id = ANY(%s::uuid[]) AND r.status IN "
                            "('succeeded','failed','cancelled','timed_out','blocked')",
                            (ids,),
                        )
                    ).fetchall()
                    for run_id, status, started, ended in rows:
                        future = self.waiting.pop(run_id, None)
                        if future and not future.done():
                            future.set_result(
                                {"status": status, "started": float(started), "ended": float(ended)}
                            )
                await asyncio.sleep(self.interval_s)

    def wait(self, run_id: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[run_id] = future
        return future


async def drive(
    base_url: str, token: str, dsn: str, runs: int, concurrency: int, db: str | None = None
) -> dict:
    poller = Poller(dsn, interval_s=0.005 if concurrency == 1 else 0.02)
    commits_before = commits(PG_ADMIN, db) if db else 0
    stop = asyncio.Event()
    poll_task = asyncio.create_task(poller.run(stop))
    totals: list[float] = []
    to_started: list[float] = []
    failed = 0
    queue = iter(range(runs))
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency * 2)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:

        async def one_client() -> None:
            nonlocal failed
            for _ in queue:
                sent = time.time()
                response = await client.post(
                    "/api/v1/agents/demo-assistant/runs/", json={"input": INPUT}, timeout=30
                )
                answered = time.time()
                response.raise_for_status()
                done = await asyncio.wait_for(poller.wait(response.json()["id"]), 60)
                if done["status"] != "succeeded":
                    failed += 1
                totals.append((done["ended"] - sent) * 1000)
                to_started.append(max(0.0, (done["started"] - answered) * 1000))

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    stop.set()
    await poll_task
    stack_commits = commits(PG_ADMIN, db) - commits_before - poller.queries if db else None
    return {
        # The stack's own transactions (reads in autocommit count too), not the poller's.
        "commits_per_run": round(stack_commits / runs, 1) if db else None,
        "concurrency": concurrency,
        "runs": runs,
        "failed": failed,
        "runs_per_s": round(runs / elapsed, 1),
        "latency_p50_ms": round(pct(totals, 50), 1),
        "latency_p99_ms": round(pct(totals, 99), 1),
        "post_to_started_p50_ms": round(pct(to_started, 50), 1),
        "post_to_started_p99_ms": round(pct(to_started, 99), 1),
    }


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by each part of the stack, summed per part."""
    tick = os.sysconf("SC_CLK_TCK")
    parts: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) == os.getpid():
            part = "bench client"
        elif "daphne" in cmd:
            part = "daphne"
        elif "celery" in cmd:
            part = "celery workers"
        elif cmd.startswith("postgres") or "postgres:" in cmd:
            part = "postgresql"
        elif "redis-server" in cmd:
            part = "redis"
        else:
            part = "other"
        parts[part] = parts.get(part, 0.0) + used
    return parts


def cpu_ms_per_run(before: dict[str, float], after: dict[str, float], runs: int) -> dict:
    return {
        part: round(1000 * (after.get(part, 0.0) - before.get(part, 0.0)) / runs, 2)
        for part in sorted(after)
    }


def commits(dsn_admin: str, db: str) -> int:
    with psycopg.connect(dsn_admin, autocommit=True) as conn:
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)
        ).fetchone()[0]


async def bare_pydantic_ai(runs: int, concurrency: int) -> dict:
    """The same demo model and tools through pydantic-ai alone, in this process."""
    from pydantic_ai import Agent

    from agents.runtime.demo import demo_model
    from agents.tools import get_tool
    from agents.tools.utils import to_pydantic_ai

    agent = Agent(
        demo_model("demo"),
        tools=[to_pydantic_ai(get_tool("calculator")), to_pydantic_ai(get_tool("current_time"))],
    )
    events = 0

    async def handler(ctx: Any, stream: Any) -> None:
        nonlocal events
        async for _ in stream:
            events += 1

    queue = iter(range(runs))

    async def worker() -> None:
        for _ in queue:
            await agent.run(INPUT, event_stream_handler=handler)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"concurrency": concurrency, "runs": runs, "runs_per_s": round(runs / elapsed, 1)}


class QueryCounter:
    """Counts the queries of every database connection of this process, whichever thread
    opens it (the executor's steps run on a thread pool)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)

    def install(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


def queries_per_run() -> dict[str, int]:
    """Queries of one run's whole path (API create + execution), counted by Django."""
    from asgiref.sync import async_to_sync
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.db.backends.signals import connection_created
    from rest_framework.test import APIClient

    from agents.runtime import execute_run
    from agents.token_services import api_token_create

    user = get_user_model().objects.get(username="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user)}")
    counter = QueryCounter()
    connections.close_all()
    connection_created.connect(counter.install)
    try:
        response = client.post(
            "/api/v1/agents/demo-assistant/runs/", {"input": INPUT}, format="json"
        )
        created = counter.count
        # The stack is stopped by now, so the queued task is never consumed: run it here.
        async_to_sync(execute_run)(response.json()["id"])
    finally:
        connection_created.disconnect(counter.install)
    return {"create": created, "execute": counter.count - created}


def main() -> dict[str, Any]:
    # This process also runs Django (for the query count): configured like the stack.
    with bench_setup("bench", pg_admin=PG_ADMIN, redis_url=REDIS_URL) as setup:
        report = measure(setup)
    print_table(report)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(report, indent=2))
    return report


def measure(setup: BenchSetup) -> dict[str, Any]:
    from tests.e2e.conftest import boot, worker_args

    env, tmp, dsn, db = setup.env, setup.tmp, setup.dsn, setup.db
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    stack = boot(env, tmp, celery=True, concurrency=20 // workers)
    for n in range(1, workers):  # more worker processes: the GIL caps each near one core
        stack.start(
            f"celery{n}",
            worker_args(concurrency=20 // workers, queue=setup.prefix, name=f"worker{n}"),
            tmp,
        )
    report: dict[str, Any] = {}
    try:
        worker = next(
            p for p, log in zip(stack.procs, stack.logs, strict=True) if log.name == "celery.log"
        )
        asyncio.run(drive(stack.base_url, stack.token, dsn, 20, 1))  # warm-up
        report["worker_processes"] = workers
        report["c1"] = asyncio.run(drive(stack.base_url, stack.token, dsn, 200, 1, db))
        report["rss_after_220_runs_kb"] = rss_kb(worker.pid)
        c20_runs = max(TOTAL_RUNS - 220, 200)
        cpu_before = cpu_seconds()
        report["c20"] = asyncio.run(drive(stack.base_url, stack.token, dsn, c20_runs, 20, db))
        report["cpu_ms_per_run_c20"] = cpu_ms_per_run(cpu_before, cpu_seconds(), c20_runs)
        report["rss_after_all_runs_kb"] = rss_kb(worker.pid)
        report["rss_growth_pct"] = round(
            100 * (report["rss_after_all_runs_kb"] / report["rss_after_220_runs_kb"] - 1), 1
        )
        stack.stop()
        report["queries_per_run"] = queries_per_run()
        report["bare_c1"] = asyncio.run(bare_pydantic_ai(200, 1))
        report["bare_c20"] = asyncio.run(bare_pydantic_ai(2000, 20))
        report["overhead_ratio_c20"] = round(
            report["bare_c20"]["runs_per_s"] / report["c20"]["runs_per_s"], 1
        )
    finally:
        stack.stop()
    return report


def print_table(report: dict[str, Any]) -> None:
    print("\nEnd-to-end runs (REST -> Celery -> PostgreSQL/Redis, demo model, 0 ms delay)")
    print(f"{'':24}{'runs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'->started p50':>15}{'p99':>8}")
    for key in ("c1", "c20"):
        r = report[key]
        print(
            f"{'concurrency ' + str(r['concurrency']):24}{r['runs_per_s']:>10}"
            f"{r['latency_p50_ms']:>10}{r['latency_p99_ms']:>10}"
            f"{r['post_to_started_p50_ms']:>15}{r['post_to_started_p99_ms']:>8}"
        )
    for key in ("bare_c1", "bare_c20"):
        r = report[key]
        print(f"{'bare pydantic-ai c' + str(r['concurrency']):24}{r['runs_per_s']:>10}")
    print(f"overhead ratio at c20: {report['overhead_ratio_c20']}x")
    cpu = report["cpu_ms_per_run_c20"]
    print("CPU ms per run at c20: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    print(
        f"commits/run: c1 {report['c1']['commits_per_run']}, c20 {report['c20']['commits_per_run']}"
        f"; queries/run: {report['queries_per_run']}"
    )
    print(
        f"worker RSS: {report['rss_after_220_runs_kb']} kB after 220 runs, "
        f"{report['rss_after_all_runs_kb']} kB after all ({report['rss_growth_pct']}%)"
    )
    statistics.mean([1])  # keep the import honest for quick edits


if __name__ == "__main__":
    main()
