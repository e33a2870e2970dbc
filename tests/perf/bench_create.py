"""Benchmark: run creation alone, on one daphne (no worker: runs stay queued).

Starts its own stack (one daphne, a fresh PostgreSQL database, Redis as the broker) in
production settings and measures:

- ``POST /api/v1/agents/<slug>/runs/`` closed-loop at concurrency 16: creates/s, p50/p99;
- an open burst of ``BENCH_CREATE_BURST`` concurrent POSTs (the make-run configuration,
  default pool and admission settings): wall time and answers by status;
- ``POST .../runs/batch/`` with 1,000 inputs: wall time, runs/s;
- daphne's CPU milliseconds per created run.

The run quota is raised out of the way but still checked (``RUNS_MAX_ACTIVE_PER_OWNER``
100,000: its lock and count are part of the path) and the per-token rates raised: this
measures the create path, not where the limits stop it. Run:
``.venv/bin/python tests/perf/bench_create.py``; writes ``var/bench/create.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.perf.stacks import BenchSetup, bench_setup  # noqa: E402

PG_ADMIN = os.environ.get("E2E_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLOSED_LOOP_CREATES = int(os.environ.get("BENCH_CREATES", "2000"))
BURST = int(os.environ.get("BENCH_CREATE_BURST", "1000"))
BATCH = 1000
RUNS = "/api/v1/agents/demo-assistant/runs/"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(base_url: str, token: str, creates: int, concurrency: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    queue = iter(range(creates))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:

        async def one_client() -> None:
            for i in queue:
                sent = time.perf_counter()
                response = await client.post(RUNS, json={"input": f"run {i}"}, timeout=60)
                latencies.append((time.perf_counter() - sent) * 1000)
                statuses[response.status_code] += 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "creates": creates,
        "concurrency": concurrency,
        "creates_per_s": round(creates / elapsed, 1),
        "p50_ms": round(pct(latencies, 50), 1),
        "p99_ms": round(pct(latencies, 99), 1),
        "statuses": dict(statuses),
    }


async def burst(base_url: str, token: str, count: int) -> dict:
    """``count`` POSTs at once, each on its own connection (as many clients would)."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    outcomes: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:

        async def one(i: int) -> None:
            try:
                response = await client.post(RUNS, json={"input": f"burst {i}"}, timeout=120)
                outcomes[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - began
    return {"requests": count, "wall_s": round(elapsed, 2), "outcomes": dict(outcomes)}


def batch(base_url: str, token: str, size: int) -> dict:
    body = {"inputs": [{"input": f"item {i}"} for i in range(size)]}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        began = time.perf_counter()
        response = client.post(RUNS + "batch/", json=body, timeout=120)
        elapsed = time.perf_counter() - began
    return {
        "inputs": size,
        "status": response.status_code,
        "wall_s": round(elapsed, 3),
        "runs_per_s": round(size / elapsed, 1),
    }


def measure(setup: BenchSetup) -> dict[str, Any]:
    from tests.e2e.conftest import boot

    env = dict(setup.env)
    env.update(RUNS_MAX_ACTIVE_PER_OWNER="100000", API_RUN_CREATE_RATE="1000000/min")
    stack = boot(env, setup.tmp, celery=False)
    report: dict[str, Any] = {}
    try:
        daphne = stack.procs[0].pid
        asyncio.run(closed_loop(stack.base_url, stack.token, 100, 4))  # warm-up
        before = cpu_s(daphne)
        report["c16"] = asyncio.run(
            closed_loop(stack.base_url, stack.token, CLOSED_LOOP_CREATES, 16)
        )
        report["daphne_cpu_ms_per_create"] = round(
            1000 * (cpu_s(daphne) - before) / CLOSED_LOOP_CREATES, 2
        )
        report["burst"] = asyncio.run(burst(stack.base_url, stack.token, BURST))
        report["batch"] = batch(stack.base_url, stack.token, BATCH)
    finally:
        stack.stop()
    return report


def print_table(report: dict[str, Any]) -> None:
    c16 = report["c16"]
    print("\nRun creation on one daphne (no worker)")
    print(
        f"closed loop c16: {c16['creates_per_s']} creates/s, p50 {c16['p50_ms']} ms, "
        f"p99 {c16['p99_ms']} ms, statuses {c16['statuses']}; "
        f"daphne CPU {report['daphne_cpu_ms_per_create']} ms/create"
    )
    b = report["burst"]
    print(f"burst of {b['requests']}: {b['wall_s']} s, {b['outcomes']}")
    bt = report["batch"]
    print(f"batch of {bt['inputs']}: HTTP {bt['status']}, {bt['wall_s']} s, {bt['runs_per_s']}/s")


def main() -> dict[str, Any]:
    with bench_setup("create", pg_admin=PG_ADMIN, redis_url=REDIS_URL) as setup:
        report = measure(setup)
    print_table(report)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "create.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
