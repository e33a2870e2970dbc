"""Benchmark: CPU per streamed token, the platform's worker against its floor.

Both halves stream from the same fake OpenAI-compatible server (tests/fakes/provider_server.py,
in a process of its own so that its CPU is nobody's), which answers every request with
``TOKENS_TOKENS`` one-word chunks ``TOKENS_GAP_MS`` apart:

- **the floor**: pydantic-ai's ``OpenAIChatModel`` (the openai SDK, httpx) running
  ``TOKENS_RUNS`` agent runs at once in this process, each streamed with an event handler
  that only iterates the events: the CPU (``time.process_time``) per streamed chunk that
  no runtime built on these libraries can avoid;
- **the platform**: the distributed stack (daphne, one Celery worker configured like
  ``make run``: threads pool, 4 threads, ``WORKER_MAX_RUNS``), an ``openai`` provider
  pointing at the same server, the same number of runs created over the API at once;
  the worker process's CPU (from /proc) per streamed token, from the first POST until
  every run is terminal. It also reports the stored ``message.delta`` events per run
  and the largest gap between a run's consecutive deltas (their emission times), and
  the receipt gaps at WebSocket clients watching a sample of the runs.

Run: ``.venv/bin/python tests/perf/run_all.py bench_tokens`` (writes var/bench/tokens.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from tests.perf.bench_runs import PG_ADMIN, REDIS_URL, cpu_seconds  # noqa: E402
from tests.perf.stacks import bench_setup  # noqa: E402

RUNS = int(os.environ.get("TOKENS_RUNS", "200"))
TOKENS = int(os.environ.get("TOKENS_TOKENS", "100"))
GAP_MS = float(os.environ.get("TOKENS_GAP_MS", "20"))
WATCHED = int(os.environ.get("TOKENS_WATCHED", "10"))
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out", "blocked")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def start_fake_provider() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = " ".join(f"tok{i}" for i in range(TOKENS))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.provider_server",
            "--port",
            str(port),
            "--text",
            text,
            "--chunk-delay",
            str(GAP_MS / 1000),
            "--times",
            "100000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "fake provider on ...": it listens
    return proc, f"http://127.0.0.1:{port}/v1"


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def floor(base_url: str, runs: int) -> dict[str, Any]:
    """pydantic-ai + the openai SDK alone: CPU per streamed chunk in this process."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import PartDeltaEvent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("gpt-4o", provider=OpenAIProvider(base_url=base_url, api_key="x"))
    agent = Agent(model)
    chunks = 0

    async def handler(ctx: Any, stream: Any) -> None:
        nonlocal chunks
        async for event in stream:
            if isinstance(event, PartDeltaEvent):
                chunks += 1

    async def one() -> None:
        await agent.run("hello", event_stream_handler=handler)

    await asyncio.gather(*(one() for _ in range(min(runs, 20))))  # warm-up: connections
    chunks = 0
    began_cpu, began = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    cpu_s, wall_s = time.process_time() - began_cpu, time.perf_counter() - began
    return {
        "runs": runs,
        "chunks": chunks,
        "wall_s": round(wall_s, 2),
        "cpu_ms_per_run": round(1000 * cpu_s / runs, 3),
        "cpu_us_per_chunk": round(1e6 * cpu_s / max(chunks, 1), 1),
    }


async def watch_ws(ws_url: str, token: str, run_id: str) -> list[float]:
    """Receipt times of a run's message.delta events at a WebSocket client."""
    from websockets.asyncio.client import connect

    times: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{ws_url}/ws/runs/{run_id}/", additional_headers=headers) as ws:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "message.delta":
                times.append(time.monotonic())
            if message.get("type", "").removeprefix("run.") in TERMINAL:
                break
    return times


async def submit(stack: Any, runs: int) -> tuple[list[str], list[asyncio.Task[list[float]]]]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    limits = httpx.Limits(max_connections=20)
    ids: list[str] = []
    watchers: list[asyncio.Task[list[float]]] = []
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, limits=limits) as c:

        async def post(i: int) -> None:
            response = await c.post("/api/v1/agents/tokens/runs/", json={"input": f"run {i}"})
            response.raise_for_status()
            run_id = response.json()["id"]
            ids.append(run_id)
            if i < WATCHED:
                watchers.append(asyncio.create_task(watch_ws(stack.ws_url, stack.token, run_id)))

        await asyncio.gather(*(post(i) for i in range(runs)))
    return ids, watchers


def wait_terminal(dsn: str, ids: list[str], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT count(*) FROM agents_run WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)",
                (ids, list(TERMINAL)),
            ).fetchone()
            if done and done[0] == len(ids):
                return
            time.sleep(0.2)
    raise TimeoutError("the runs did not finish")


def stored_deltas(dsn: str, ids: list[str]) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT run_id, created_at FROM agents_runevent WHERE run_id = ANY(%s::uuid[])"
            " AND type = 'message.delta' ORDER BY run_id, seq",
            (ids,),
        ).fetchall()
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM agents_run WHERE id = ANY(%s::uuid[])"
                " GROUP BY status",
                (ids,),
            ).fetchall()
        )
    per_run: dict[Any, list[Any]] = {}
    for run_id, at in rows:
        per_run.setdefault(run_id, []).append(at)
    counts = [len(v) for v in per_run.values()]
    gaps, gap_at = [], []
    for v in per_run.values():
        if len(v) < 2:
            continue
        steps = [(b - a).total_seconds() * 1000 for a, b in zip(v, v[1:], strict=False)]
        gaps.append(max(steps))
        # Where in the run the longest gap fell: 0 = right after its first delta.
        gap_at.append(steps.index(max(steps)) / len(steps))
    return {
        "statuses": statuses,
        "deltas_per_run_p50": pct([float(c) for c in counts], 50),
        "deltas_per_run_min": min(counts, default=0),
        "max_gap_per_run_p50_ms": round(pct(gaps, 50), 1),
        "max_gap_per_run_p99_ms": round(pct(gaps, 99), 1),
        "max_gap_position_p50": round(pct(gap_at, 50), 2),
    }


def profile(pid: int) -> subprocess.Popen[bytes] | None:
    """With ``TOKENS_PYSPY=<file>``, py-spy samples the worker while the runs stream
    (collapsed stacks, one line per stack: ``grep``/``sort`` them)."""
    out = os.environ.get("TOKENS_PYSPY")
    if not out:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    args = [str(spy), "record", "-p", str(pid), "-o", out, "--format", "raw", "-r", "200"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def platform(setup: Any, base_url: str, runs: int) -> dict[str, Any]:
    from tests.e2e.conftest import boot

    setup.env.setdefault("RUN_TIMEOUT_S", "600")
    stack = boot(setup.env, setup.tmp, celery=True, concurrency=4)
    try:
        stack.manage(
            "shell",
            "-v0",
            "-c",
            "from agents.models import Agent, Provider;"
            "p, _ = Provider.objects.update_or_create(name='fake', defaults=dict(kind='openai',"
            f" base_url={base_url!r}, max_retries=0, timeout_s=60));"
            "Agent.objects.update_or_create(slug='tokens', defaults=dict(name='Tokens',"
            " provider=p, model_name='gpt-4o', tools=[]))",
        )
        worker = stack.procs[1].pid
        # Warm-up: the worker builds its model client and imports on the first runs.
        warm, _ = asyncio.run(submit(stack, 5))
        wait_terminal(setup.dsn, warm)
        cpu_before, parts_before, began = proc_cpu_s(worker), cpu_seconds(), time.monotonic()
        spy = profile(worker)

        async def go() -> tuple[list[str], list[list[float]]]:
            ids, watchers = await submit(stack, runs)
            await asyncio.to_thread(wait_terminal, setup.dsn, ids)
            return ids, await asyncio.gather(*watchers)

        ids, watched = asyncio.run(go())
        wall_s = time.monotonic() - began
        worker_s = proc_cpu_s(worker) - cpu_before
        parts_after = cpu_seconds()
        if spy is not None:
            spy.terminate()
            spy.wait(timeout=30)
    finally:
        stack.stop()
    tokens = runs * TOKENS
    ws_gaps = [(b - a) * 1000 for times in watched for a, b in zip(times, times[1:], strict=False)]
    return {
        "runs": runs,
        "tokens": tokens,
        "wall_s": round(wall_s, 2),
        "worker_cpu_s": round(worker_s, 2),
        "worker_cpu_ms_per_run": round(1000 * worker_s / runs, 2),
        "worker_cpu_us_per_token": round(1e6 * worker_s / tokens, 1),
        "cpu_ms_per_run_by_part": {
            k: round(1000 * (parts_after.get(k, 0) - parts_before.get(k, 0)) / runs, 2)
            for k in sorted(parts_after)
        },
        "watched_deltas_per_run": [len(t) for t in watched],
        "watched_gap_p50_ms": round(pct(ws_gaps, 50), 1),
        "watched_gap_p99_ms": round(pct(ws_gaps, 99), 1),
        "watched_gap_max_ms": round(max(ws_gaps, default=float("nan")), 1),
        **stored_deltas(setup.dsn, ids),
    }


def main() -> dict[str, Any]:
    fake, base_url = start_fake_provider()
    try:
        fake_before = proc_cpu_s(fake.pid)
        report: dict[str, Any] = {"runs": RUNS, "tokens_per_run": TOKENS, "gap_ms": GAP_MS}
        report["floor"] = asyncio.run(floor(base_url, RUNS))
        with bench_setup("tokens", pg_admin=PG_ADMIN, redis_url=REDIS_URL) as setup:
            report["platform"] = platform(setup, base_url, RUNS)
        report["fake_server_cpu_s"] = round(proc_cpu_s(fake.pid) - fake_before, 2)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    floor_us = report["floor"]["cpu_us_per_chunk"]
    report["ratio_worker_to_floor"] = round(
        report["platform"]["worker_cpu_us_per_token"] / floor_us, 2
    )
    print_table(report)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def print_table(report: dict[str, Any]) -> None:
    f, p = report["floor"], report["platform"]
    print(
        f"\n{report['runs']} runs x {report['tokens_per_run']} tokens, {report['gap_ms']} ms apart"
    )
    print(
        f"floor (pydantic-ai + openai SDK alone): {f['cpu_us_per_chunk']} us CPU per chunk "
        f"({f['cpu_ms_per_run']} ms per run, {f['wall_s']} s)"
    )
    print(
        f"worker: {p['worker_cpu_us_per_token']} us CPU per token ({p['worker_cpu_ms_per_run']}"
        f" ms per run, {p['wall_s']} s): {report['ratio_worker_to_floor']}x the floor"
    )
    print(
        f"stored deltas per run p50 {p['deltas_per_run_p50']} (min {p['deltas_per_run_min']}),"
        f" largest gap per run p50 {p['max_gap_per_run_p50_ms']} ms,"
        f" p99 {p['max_gap_per_run_p99_ms']} ms (at {p['max_gap_position_p50']} of the run,"
        f" p50); statuses {p['statuses']}"
    )
    print(
        f"watched over WebSocket: deltas {p['watched_deltas_per_run']}, gap p50 "
        f"{p['watched_gap_p50_ms']} ms, p99 {p['watched_gap_p99_ms']} ms, max "
        f"{p['watched_gap_max_ms']} ms"
    )
    print(f"CPU ms per run by part: {p['cpu_ms_per_run_by_part']}")
    print(f"fake server CPU: {report['fake_server_cpu_s']} s")


if __name__ == "__main__":
    main()
