"""Streaming benchmark (a script, not a test): throughput, latency, fan-out, idle memory.

Run: .venv/bin/python tests/perf/bench_streaming.py   (or `make bench`)
Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL as for the tests). Boots the
distributed stack of the e2e tests (daphne + Celery worker, own database), prints a
table and writes var/bench/streaming.json.

Emission: ``manage.py emit_synthetic_run`` drives the runtime's own EventEmitter and
EventWriter for a real run row in a separate process (playing the worker): stored in
micro-batches, then published on the Redis pub/sub layer, then fanned out by daphne.
Scenario (a) runs with the runtime's coalescing on (``--coalesce``), as a real run does:
each token's text is its emission time, so a client splits every delta it receives into
tokens and measures each token's latency, the tokens delivered per second and the gap
between deltas. Scenario (b), the fan-out, keeps one event per delta (the delta's ``t``
is its emission time) so that its event rate is the one asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import psycopg  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from tests.e2e.conftest import PG_ADMIN_DSN, Stack, base_env, boot  # noqa: E402
from tests.e2e.streams import SyntheticRun, rss_kib  # noqa: E402
from tests.perf.stacks import production_env  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def watch(stack: Stack, run_id: str) -> dict[str, Any]:
    """Read a run's stream to the end like the documented client: resume with ``after``
    on 4408 (too slow) or a drop. Per-delta latency and receipt times."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    seqs: list[int] = []
    latencies: list[float] = []
    received: list[float] = []  # receipt time of each message.delta
    tokens = 0
    first_emit = last_recv = None
    resumes = 0
    code = None
    async with asyncio.timeout(300):
        while code != 1000:
            after = seqs[-1] if seqs else 0
            url = f"{stack.ws_url}/ws/runs/{run_id}/?after={after}"
            async with connect(
                url, additional_headers=headers, max_queue=None, max_size=None
            ) as ws:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        now = time.time()
                        message = json.loads(raw)
                        if "seq" not in message:
                            continue
                        seqs.append(message["seq"])
                        data = message["data"]
                        if message["type"] != "message.delta":
                            continue
                        received.append(now)
                        # Uncoalesced: the delta's t; coalesced: each token is its time.
                        stamps = [data["t"]] if "t" in data else stamps_of(data["delta"])
                        tokens += len(stamps)
                        latencies += [(now - t) * 1000 for t in stamps]
                        first_emit = stamps[0] if first_emit is None else first_emit
                        last_recv = now
                code = ws.close_code
            if code != 1000:
                resumes += 1
    return {
        "events": len(seqs),
        "complete": seqs == list(range(1, len(seqs) + 1)),
        "resumes": resumes,
        "latencies_ms": latencies,
        "tokens": tokens,
        "gaps_ms": [(b - a) * 1000 for a, b in zip(received, received[1:], strict=False)],
        "first_emit": first_emit,
        "last_recv": last_recv,
    }


def stamps_of(text: str) -> list[float]:
    return [float(token) for token in text.split()]


async def synthetic(
    stack: Stack, viewers: int, *args: str, env: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], Any]:
    run = SyntheticRun(stack, *args, env=env)
    try:
        tasks = [asyncio.ensure_future(watch(stack, run.run_id)) for _ in range(viewers)]
        await asyncio.sleep(1.0 + viewers / 100)  # everyone connected and replayed
        run.go()
        results = await asyncio.gather(*tasks)
        return results, await asyncio.to_thread(run.wait)
    finally:
        run.kill()


def summarise(
    results: list[dict[str, Any]], expected: int, *, tokens: int | None = None
) -> dict[str, Any]:
    """``expected`` events per viewer; with ``tokens`` (coalesced runs) the event count
    is the runtime's choice, and completeness is every seq once plus every token."""
    latencies = [x for r in results for x in r["latencies_ms"]]
    gaps = [x for r in results for x in r["gaps_ms"]]
    delivered = results[0]["tokens"]
    span = results[0]["last_recv"] - results[0]["first_emit"]
    if tokens is None:
        complete = all(r["complete"] and r["events"] == expected for r in results)
    else:
        complete = all(r["complete"] and r["tokens"] == tokens for r in results)
    return {
        "viewers": len(results),
        "all_complete": complete,
        "events_per_viewer": results[0]["events"],
        "tokens_per_viewer": delivered,
        "resumes_after_4408": sum(r["resumes"] for r in results),
        "delivered_tokens_per_s": round(delivered / span, 1) if span else None,
        "delta_gap_p50_ms": round(pct(gaps, 50), 2),
        "delta_gap_p99_ms": round(pct(gaps, 99), 2),
        "delta_gap_max_ms": round(max(gaps, default=float("nan")), 2),
        "latency_p50_ms": round(pct(latencies, 50), 2),
        "latency_p99_ms": round(pct(latencies, 99), 2),
        "latency_max_ms": round(max(latencies), 2),
    }


async def first_event_after_post(stack: Stack, runs: int = 10) -> dict[str, Any]:
    """POST a demo run, connect at once, time until run.started / the first delta."""
    started, first_delta = [], []
    async with httpx.AsyncClient(base_url=stack.base_url, headers=_bearer(stack)) as client:
        for i in range(runs + 1):  # the first run warms the worker up and is not counted
            response = await client.post(
                "/api/v1/agents/demo-assistant/runs/", json={"input": "hello there, bench"}
            )
            posted = time.monotonic()
            run_id = response.json()["id"]
            url = f"{stack.ws_url}/ws/runs/{run_id}/"
            async with connect(url, additional_headers=_bearer(stack), max_queue=None) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "run.started" and i:
                        started.append((time.monotonic() - posted) * 1000)
                    if message.get("type") == "message.delta":
                        if i:
                            first_delta.append((time.monotonic() - posted) * 1000)
                        break
    return {
        "runs": runs,
        "to_run_started_p50_ms": round(statistics.median(started), 1),
        "to_run_started_max_ms": round(max(started), 1),
        "to_first_delta_p50_ms": round(statistics.median(first_delta), 1),
        "to_first_delta_max_ms": round(max(first_delta), 1),
    }


def _bearer(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token}"}


async def idle_connections(stack: Stack, count: int = 1000) -> dict[str, Any]:
    """Memory of daphne per idle run-stream WebSocket (a run that stays queued)."""
    run = SyntheticRun(stack, "--events", "1")
    pid = stack.procs[0].pid
    sockets = []
    try:
        # Warm up: the first connections load code and create the run's feed.
        warm = [await connect(_url(stack, run.run_id), additional_headers=_bearer(stack))]
        await asyncio.sleep(1)
        before = rss_kib(pid)
        for i in range(0, count, 50):
            batch = [
                connect(_url(stack, run.run_id), additional_headers=_bearer(stack))
                for _ in range(min(50, count - i))
            ]
            sockets.extend(await asyncio.gather(*batch))
        await asyncio.sleep(3)  # each has replayed run.queued and is now idle
        after = rss_kib(pid)
        open_now = sum(1 for ws in sockets if ws.close_code is None)
        for ws in [*warm, *sockets]:
            await ws.close()
        return {
            "connections": count,
            "still_open": open_now,
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "kib_per_connection": round((after - before) / count, 1),
        }
    finally:
        run.kill()


def _url(stack: Stack, run_id: str) -> str:
    return f"{stack.ws_url}/ws/runs/{run_id}/"


async def scenarios(stack: Stack) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # Idle memory first, on a fresh daphne, before the fan-out scenarios grow its heap.
    results["c_idle_connections"] = await idle_connections(stack)
    # (a) through the runtime's coalescing, as real runs stream: tokens, not events.
    coalesce = ("--coalesce",)
    flat, _ = await synthetic(stack, 1, "--events", "10000", "--rate", "0", *coalesce)
    results["a_10000_tokens_flat_out_1_viewer"] = summarise(flat, 0, tokens=10000)
    paced, _ = await synthetic(stack, 1, "--events", "5000", "--rate", "500", *coalesce)
    results["a_5000_tokens_at_500_per_s_1_viewer"] = summarise(paced, 0, tokens=5000)
    paced_50, _ = await synthetic(stack, 1, "--events", "1000", "--rate", "50", *coalesce)
    results["a_1000_tokens_at_50_per_s_1_viewer"] = summarise(paced_50, 0, tokens=1000)
    results["a_post_to_first_event"] = await first_event_after_post(stack)
    fan, _ = await synthetic(stack, 100, "--events", "2000", "--rate", "200")
    results["b_2000_deltas_at_200_per_s_100_viewers"] = summarise(fan, 2005)
    fast_fan, _ = await synthetic(stack, 100, "--events", "10000", "--rate", "0")
    results["b_10000_deltas_flat_out_100_viewers"] = summarise(fast_fan, 10005)
    return results


def main() -> None:
    """Boot the distributed stack, run the scenarios, print a table, write JSON."""
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    tmp = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    db_name = f"switchyard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = base_env(tmp)
    env.update(
        production_env(
            database_url=PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db_name}",
            redis_url=redis_url,
            prefix=f"bench{uuid.uuid4().hex[:6]}",
        ),
        WS_PING_INTERVAL_S="20",
    )
    stack = boot(env, tmp, celery=True)
    try:
        results = asyncio.run(scenarios(stack))
    finally:
        stack.stop()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    report(results)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "streaming.json").write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    head = f"{'scenario':<40} {'viewers':>7} {'complete':>8} {'4408s':>5} {'tok/s':>8}"
    print(f"{head} {'events':>7} {'p50 ms':>8} {'p99 ms':>8} {'gap p99':>8}")
    for name, r in results.items():
        if "latency_p50_ms" in r:
            print(
                f"{name:<40} {r['viewers']:>7} {r['all_complete']!s:>8} "
                f"{r['resumes_after_4408']:>5} {r['delivered_tokens_per_s']!s:>8} "
                f"{r['events_per_viewer']:>7} {r['latency_p50_ms']:>8} "
                f"{r['latency_p99_ms']:>8} {r['delta_gap_p99_ms']:>8}"
            )
    first = results["a_post_to_first_event"]
    print(
        f"POST -> run.started p50 {first['to_run_started_p50_ms']} ms "
        f"(max {first['to_run_started_max_ms']}); -> first delta p50 "
        f"{first['to_first_delta_p50_ms']} ms (max {first['to_first_delta_max_ms']})"
    )
    idle = results["c_idle_connections"]
    print(
        f"{idle['connections']} idle WebSockets: {idle['kib_per_connection']} KiB each "
        f"(daphne RSS {idle['rss_before_mib']} -> {idle['rss_after_mib']} MiB, "
        f"{idle['still_open']} open)"
    )


if __name__ == "__main__":
    main()
