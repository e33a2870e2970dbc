"""Benchmark: from a run's terminal event to its webhook delivery.

Boots a distributed stack (daphne, a Celery worker, a fresh PostgreSQL database, Redis),
points a webhook endpoint at a receiver on 127.0.0.1 in this process, runs N demo runs
(10 at a time) and measures, for each delivery, the time from the terminal event's
timestamp (``data.event.at``, written in the run's terminal transaction) to the moment the
receiver read the request. Every delivery is verified with ``standardwebhooks``.

Run: ``make bench`` or ``.venv/bin/python tests/perf/run_all.py bench_webhooks``
(``BENCH_WEBHOOK_RUNS``, default 200). Writes ``var/bench/webhooks.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.perf.stacks import bench_setup  # noqa: E402

PG_ADMIN = os.environ.get("E2E_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUNS = int(os.environ.get("BENCH_WEBHOOK_RUNS", "200"))
CONCURRENCY = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def submit(base_url: str, token: str, runs: int) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    created = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            nonlocal created
            async with semaphore:
                response = await client.post(
                    "/api/v1/agents/demo-assistant/runs/", json={"input": f"What is {i}*7?"}
                )
                created += response.status_code == 201

        await asyncio.gather(*(one(i) for i in range(runs)))
    return created


def main() -> dict[str, Any]:
    from tests.webhooks.receiver import running_receiver

    with bench_setup("hooks", pg_admin=PG_ADMIN, redis_url=REDIS_URL) as setup:
        from tests.e2e.conftest import boot

        setup.env["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "127.0.0.0/8"
        stack = boot(setup.env, setup.tmp, celery=True, concurrency=8)
        try:
            with running_receiver() as receiver, stack.client() as client:
                made = client.post(
                    "/api/v1/webhooks/", json={"url": receiver.url, "events": ["run.succeeded"]}
                ).json()
                started = time.monotonic()
                created = asyncio.run(submit(stack.base_url, stack.token, RUNS))
                receiver.wait_for(created, timeout=120)
                wall = time.monotonic() - started
                payloads = receiver.verified(made["secret"])
                latencies = []
                for request in receiver.requests:
                    body = json.loads(request.body)
                    at = datetime.fromisoformat(body["data"]["event"]["at"].replace("Z", "+00:00"))
                    latencies.append((request.at - at.timestamp()) * 1000)
        finally:
            stack.stop()
    report = {
        "runs": RUNS,
        "created": created,
        "delivered_verified": len(payloads),
        "requests": len(latencies),
        "wall_s": round(wall, 1),
        "terminal_to_delivery_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
        },
    }
    print(json.dumps(report, indent=2))
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "webhooks.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
