"""Benchmark: the CPU floor of one run on this machine, part by part.

What a run through the platform cannot avoid, each measured alone with nothing of the
runtime's own bookkeeping (no claim, no event log, no ledger, no finish):

- **HTTP through daphne**: what daphne adds to Django for the smallest request
  (``GET /livez``, no database, at concurrency 20, minus the same request in Django's
  test client); plus the client's own CPU (httpx);
- **the POST**: creating a run through DRF in this process (token auth, validation, the
  insert transaction, the Celery publish), and PostgreSQL's CPU for it;
- **Celery**: a no-op task published, consumed and acked by a threads-pool worker
  configured like the platform's (``floor_tasks.py``), and Redis' CPU for it;
- **pydantic-ai**: the demo agent's loop alone (two model requests and a tool call), as
  in ``bench_runs``' bare agent.

Their sum is the least CPU one end-to-end run costs, and 2 cores divided by it the most
runs/s this machine could do even if the runtime did nothing else. Then the same end to
end, where the parts contend for the two cores: the real API and Celery, driven like
``bench_runs`` at concurrency 20, but consumed by workers with a *null runtime*
(``null_worker.py``: the bare agent, then one SQL statement storing the outcome). Writes
``var/bench/floor.json``. Run: ``.venv/bin/python tests/perf/run_all.py bench_floor``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from tests.perf.bench_runs import (  # noqa: E402
    INPUT,
    PG_ADMIN,
    REDIS_URL,
    bare_pydantic_ai,
    cpu_ms_per_run,
    cpu_seconds,
    drive,
)
from tests.perf.stacks import BenchSetup, bench_setup  # noqa: E402

N_HTTP = int(os.environ.get("FLOOR_HTTP", "3000"))
N_POST = int(os.environ.get("FLOOR_POSTS", "1000"))
N_TASKS = int(os.environ.get("FLOOR_TASKS", "3000"))
N_AGENT = int(os.environ.get("FLOOR_RUNS", "2000"))
N_NULL = int(os.environ.get("FLOOR_NULL_RUNS", "1500"))


async def http_floor(base_url: str, requests: int, concurrency: int = 20) -> None:
    """Closed-loop GETs of /livez: daphne's and the client's cost of one request."""
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:

        async def one() -> None:
            for _ in queue:
                response = await client.get("/livez")
                assert response.status_code == 200

        await asyncio.gather(*(one() for _ in range(concurrency)))


def post_floor(posts: int) -> float:
    """CPU ms of this process per run created through the API (Django's test client)."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from agents.token_services import api_token_create

    user = get_user_model().objects.get(username="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user)}")

    def post() -> None:
        response = client.post(
            "/api/v1/agents/demo-assistant/runs/", {"input": INPUT}, format="json"
        )
        assert response.status_code == 201, response.content

    for _ in range(50):  # warm-up
        post()
    started = time.process_time()
    for _ in range(posts):
        post()
    return 1000 * (time.process_time() - started) / posts


def get_floor(requests: int) -> float:
    """CPU ms of GET /livez in this process (Django's test client): the middleware chain
    and the view, which the in-process POST also pays; what daphne adds is the rest."""
    from django.test import Client

    client = Client()
    for _ in range(50):
        client.get("/livez")
    started = time.process_time()
    for _ in range(requests):
        assert client.get("/livez").status_code == 200
    return 1000 * (time.process_time() - started) / requests


def celery_floor(tasks: int, tmp: Path, prefix: str) -> tuple[float, dict[str, float]]:
    """CPU ms of the publisher per task, and of each part of the machine per task."""
    from tests.e2e.conftest import worker_args
    from tests.perf import floor_tasks

    counter = f"{prefix}-done"
    env = {**os.environ, "FLOOR_QUEUE": prefix, "FLOOR_COUNTER": counter, "REDIS_URL": REDIS_URL}
    workers = [
        subprocess.Popen(
            worker_args(
                concurrency=10,
                queue=prefix,
                name=f"floor{n}",
                app="tests.perf.floor_tasks",
                level="warning",
            ),
            cwd=ROOT,
            env=env,
            stdout=(tmp / f"floor-worker{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in range(2)
    ]
    store = redis.Redis.from_url(REDIS_URL)
    floor_tasks.app.conf.task_default_queue = prefix
    try:
        store.set(counter, 0)
        for _ in range(50):  # warm-up, and wait for the workers
            floor_tasks.noop.delay("warm-up")
        deadline = time.monotonic() + 60
        while int(store.get(counter) or 0) < 50:
            assert time.monotonic() < deadline, "the floor workers consume nothing"
            time.sleep(0.1)
        store.set(counter, 0)
        before = cpu_seconds()
        started = time.process_time()
        for n in range(tasks):
            floor_tasks.noop.delay(str(n))
        publish_ms = 1000 * (time.process_time() - started) / tasks
        while int(store.get(counter) or 0) < tasks:
            time.sleep(0.05)
        parts = cpu_ms_per_run(before, cpu_seconds(), tasks)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        store.delete(counter, prefix)
    return publish_ms, parts


def measure(setup: BenchSetup) -> dict[str, Any]:
    from tests.e2e.conftest import boot

    stack = boot(setup.env, setup.tmp, celery=False)
    report: dict[str, Any] = {}
    try:
        asyncio.run(http_floor(stack.base_url, 200))  # warm-up
        before = cpu_seconds()
        asyncio.run(http_floor(stack.base_url, N_HTTP))
        report["http_get_livez"] = cpu_ms_per_run(before, cpu_seconds(), N_HTTP)
    finally:
        stack.stop()
    report["get_livez_ms_in_process"] = round(get_floor(N_HTTP), 2)
    before = cpu_seconds()
    report["post_ms_in_process"] = round(post_floor(N_POST), 2)
    report["post_postgresql_ms"] = cpu_ms_per_run(before, cpu_seconds(), N_POST).get(
        "postgresql", 0.0
    )
    redis.Redis.from_url(REDIS_URL).delete(setup.prefix)  # the POSTs' tasks: nobody runs them
    publish_ms, report["celery_noop_task"] = celery_floor(N_TASKS, setup.tmp, setup.prefix)
    report["celery_publish_ms"] = round(publish_ms, 2)
    started = time.process_time()
    asyncio.run(bare_pydantic_ai(N_AGENT, 20))
    report["pydantic_ai_ms"] = round(1000 * (time.process_time() - started) / N_AGENT, 2)
    return report


def null_runtime(setup: BenchSetup, runs: int) -> dict[str, Any]:
    """The real API and Celery, with workers that do the least a run can do
    (``null_worker.py``), driven like ``bench_runs`` at concurrency 20."""
    from tests.e2e.conftest import boot, worker_args

    stack = boot(setup.env, setup.tmp, celery=False)
    try:
        for n in range(2):
            stack.start(
                f"null-worker{n}",
                worker_args(
                    concurrency=10,
                    queue=setup.prefix,
                    name=f"null{n}",
                    app="tests.perf.null_worker",
                    level="warning",
                ),
                setup.tmp,
            )
        asyncio.run(drive(stack.base_url, stack.token, setup.dsn, 100, 20))  # warm-up
        before = cpu_seconds()
        result = asyncio.run(drive(stack.base_url, stack.token, setup.dsn, runs, 20, setup.db))
        result["cpu_ms_per_run"] = cpu_ms_per_run(before, cpu_seconds(), runs)
    finally:
        stack.stop()
    return result


def main() -> dict[str, Any]:
    with bench_setup("floor", pg_admin=PG_ADMIN, redis_url=REDIS_URL) as setup:
        report = measure(setup)
        report["null_runtime_c20"] = null_runtime(setup, N_NULL)
    http = report["http_get_livez"]
    celery = report["celery_noop_task"]
    floor = {
        # The middleware chain is in the in-process POST below: count only what daphne adds.
        "daphne (HTTP, ASGI) beyond Django": http.get("daphne", 0.0)
        - report["get_livez_ms_in_process"],
        "HTTP client (httpx), per request": http.get("bench client", 0.0),
        "POST creating a run (DRF, auth, insert, Celery publish)": report["post_ms_in_process"],
        "PostgreSQL for that POST": report["post_postgresql_ms"],
        "Celery worker: consume + ack a no-op task": celery.get("celery workers", 0.0),
        "Redis for the task": celery.get("redis", 0.0),
        "pydantic-ai agent loop (bare)": report["pydantic_ai_ms"],
    }
    report["floor_ms"] = {k: round(v, 2) for k, v in floor.items()}
    report["floor_total_ms"] = round(sum(floor.values()), 2)
    report["ceiling_runs_per_s_on_2_cores"] = round(2000 / report["floor_total_ms"], 1)
    print_table(report)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor.json").write_text(json.dumps(report, indent=2))
    return report


def print_table(report: dict[str, Any]) -> None:
    print("\nCPU floor of one run (ms), each part measured alone, no runtime bookkeeping")
    for part, ms in report["floor_ms"].items():
        print(f"  {part:58}{ms:>8}")
    print(f"  {'total':58}{report['floor_total_ms']:>8}")
    print(
        "ceiling on 2 cores if the runtime did nothing else: "
        f"{report['ceiling_runs_per_s_on_2_cores']} runs/s"
    )
    null = report["null_runtime_c20"]
    cpu = ", ".join(f"{k} {v}" for k, v in null["cpu_ms_per_run"].items())
    print(
        f"\nEnd to end with a null runtime (real API and Celery, workers that only run the "
        f"bare agent and store the outcome in one statement), c20: {null['runs_per_s']} runs/s,"
        f" p50 {null['latency_p50_ms']} ms, {null['failed']} failed\nCPU ms per run: {cpu}"
    )


if __name__ == "__main__":
    main()
