"""Benchmark: run capacity under a realistic streaming load (issue 13).

A local OpenAI-compatible server (``tests/perf/stream_server.py``, its own process)
answers each model request after ``--ttft-ms`` and then streams ``--tokens`` tokens
``--gap-ms`` apart; an ``openai`` provider points at it (one model call per run). The
stack is daphne + Celery worker(s) + beat on a fresh PostgreSQL database and a private
channel prefix / queue, configured like ``make run`` (one worker, ``--pool threads
--concurrency 4``, the default ``WORKER_MAX_RUNS``) or like the documented scale-out
(one worker process per core). For each N, N runs are submitted at once (N concurrent
``POST``s; or ``POST .../runs/batch/`` in chunks when that endpoint exists), and it
reports:

- wall time (first POST sent to the last run finished), runs/s, time to accept all;
- peak runs in flight, counted at the fake server (requests open at once);
- p50/p99 run latency, ``created_at`` to ``finished_at``;
- for a sample of runs watched over WebSocket from their creation: the p99 gap between
  consecutive ``message.delta`` receipts and the median deltas per run;
- errors by kind (HTTP status, transport errors such as resets, failed runs by error
  code), 429/503 shed and retried after ``Retry-After``, repeated provider requests;
- events stored per run against the uncoalesced count, and whether each run's stored
  deltas concatenate to the streamed text;
- worker RSS per in-flight run ((RSS at peak − RSS before) / peak in flight);
- CPU per streamed token per process (``/proc/<pid>/stat`` utime+stime deltas / tokens
  the fake server sent), and the 1-minute load average at the start and end.

Run: ``make bench`` (all benchmarks, defaults below) or
``.venv/bin/python tests/perf/bench_capacity.py --n 100,500 --config make-run``
(``--quick`` for a 20-run smoke). Writes ``var/bench/capacity.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

PG_ADMIN = os.environ.get("E2E_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AGENT = "capacity"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out", "blocked")
# run.queued, run.started, message.completed, usage, run.succeeded around the deltas.
EVENTS_AROUND_DELTAS = 5
CONFIGS = {
    # make run (scripts/run.sh): one worker, 4 pool threads, WORKER_MAX_RUNS's default.
    "make-run": 1,
    # docs/deployment.md, "Scaling each part": one worker process per core.
    "scale-out": os.cpu_count() or 2,
}


@dataclass
class Options:
    ns: list[int] = field(default_factory=lambda: [100, 500, 1000, 2000])
    ttft_ms: float = 300
    tokens: int = 100
    gap_ms: float = 20
    configs: list[str] = field(default_factory=lambda: ["make-run", "scale-out"])
    creates: list[str] = field(default_factory=lambda: ["single", "batch"])
    watch: int = 20  # runs per round watched over WebSocket
    round_timeout_s: float = 600
    redis_url: str = REDIS_URL
    pg_admin: str = PG_ADMIN


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", default="100,500,1000,2000", help="runs per round, comma list")
    parser.add_argument("--ttft-ms", type=float, default=300)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=20)
    parser.add_argument("--config", default="make-run,scale-out", help="make-run, scale-out")
    parser.add_argument("--create", default="single,batch", help="single, batch")
    parser.add_argument("--watch", type=int, default=20, help="runs watched over WebSocket")
    parser.add_argument("--round-timeout", type=float, default=600, help="seconds per round")
    parser.add_argument("--quick", action="store_true", help="smoke: 20 runs of 10 tokens")
    args = parser.parse_args(argv)
    options = Options(
        ns=[int(n) for n in args.n.split(",")],
        ttft_ms=args.ttft_ms,
        tokens=args.tokens,
        gap_ms=args.gap_ms,
        configs=args.config.split(","),
        creates=args.create.split(","),
        watch=args.watch,
        round_timeout_s=args.round_timeout,
    )
    for config in options.configs:
        if config not in CONFIGS:
            parser.error(f"unknown --config {config}")
    return quick(options) if args.quick else options


def quick(options: Options) -> Options:
    options.ns, options.tokens, options.ttft_ms, options.watch = [20], 10, 100, 5
    options.configs = options.configs[:1]
    return options


# --- processes -----------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pids_named(*needles: str) -> list[int]:
    """Processes whose command line contains one of ``needles`` (PostgreSQL, Redis)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if any(needle in cmd for needle in needles):
                    found.append(int(entry.name))
    return found


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    sockets of the machine: a burst of connects beyond a server's accept backlog)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


def load_1m() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class FakeServer:
    proc: subprocess.Popen[str]
    url: str  # root, e.g. http://127.0.0.1:PORT

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats", timeout=10).json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset", timeout=10).raise_for_status()


@contextlib.contextmanager
def fake_server(options: Options) -> Iterator[FakeServer]:
    args = [
        sys.executable,
        str(ROOT / "tests" / "perf" / "stream_server.py"),
        f"--ttft-ms={options.ttft_ms}",
        f"--tokens={options.tokens}",
        f"--gap-ms={options.gap_ms}",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if line[:1] != ["ready"]:
            raise RuntimeError(f"the fake server did not start: {line}")
        yield FakeServer(proc, f"http://127.0.0.1:{line[1]}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Capacity:
    """A booted stack and what the bench needs of it."""

    stack: Any  # tests.e2e.conftest.Stack
    dsn: str
    daphne: int  # pids
    workers: list[int]


@contextlib.contextmanager
def capacity_stack(config: str, fake: FakeServer, options: Options) -> Iterator[Capacity]:
    """daphne, the configuration's workers and beat on a fresh database; dropped after."""
    from tests.e2e.conftest import (
        base_env,
        daphne_args,
        seeded_stack,
        wait_ready,
        worker_args,
    )
    from tests.perf.stacks import production_env

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-capacity-{config}-"))
    db = f"switchyard_capacity_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(options.pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = options.pg_admin.rsplit("/", 1)[0] + f"/{db}"
    env = base_env(tmp)
    env.pop("WORKER_METRICS_PORT", None)  # several workers would compete for one port
    prefix = f"cap{uuid.uuid4().hex[:6]}"
    env.update(production_env(database_url=dsn, redis_url=options.redis_url, prefix=prefix))
    env["PROVIDER_CHECK_ALLOW_PRIVATE_NETWORKS"] = "127.0.0.0/8"
    # One token submits every round (thousands of runs a minute): like API_THROTTLE_RATE
    # in production_env, its per-token create rate would cap the benchmark, not the stack.
    env["API_RUN_CREATE_RATE"] = "1000000/min"
    stack = None
    try:
        stack, port = seeded_stack(env)
        stack.manage("shell", "-v0", "-c", seed_code(fake.base_url))
        daphne = stack.start("daphne", daphne_args(port), tmp)
        workers = [
            # make run's worker: its queue's control queue first, then the runs.
            stack.start(
                f"worker{i}", worker_args(concurrency=4, queue=prefix, name=f"worker{i}"), tmp
            )
            for i in range(CONFIGS[config])
        ]
        beat = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "warning"]
        stack.start("beat", [*beat, "-s", str(tmp / "celerybeat-schedule")], tmp)
        wait_ready(stack)
        yield Capacity(stack, dsn, daphne.pid, [w.pid for w in workers])
    finally:
        if stack is not None:
            stack.stop()
        with psycopg.connect(options.pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def seed_code(base_url: str) -> str:
    return (
        "from agents.models import Agent, Provider;"
        "p, _ = Provider.objects.update_or_create(name='capacity-fake', defaults=dict("
        f"kind='openai', base_url={base_url!r}, max_retries=0, timeout_s=120));"
        f"Agent.objects.update_or_create(slug={AGENT!r}, defaults=dict(name='Capacity',"
        " provider=p, model_name='gpt-4o', tools=[]))"
    )


# --- one round: N runs at once --------------------------------------------------------


@dataclass
class Submission:
    ids: list[str | None]
    errors: collections.Counter[str]
    shed: collections.Counter[str]
    accepted_at: float


def error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"reset ({type(exc).__name__})"
    return type(exc).__name__


async def post_with_retry(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    errors: collections.Counter[str],
    shed: collections.Counter[str],
) -> dict[str, Any] | None:
    """One create, retried only after a deliberate 429/503 with Retry-After."""
    deadline = time.monotonic() + 300
    while True:
        try:
            response = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            errors[error_kind(exc)] += 1
            return None
        if response.status_code == 201:
            return response.json()
        retry_after = response.headers.get("retry-after")
        if response.status_code in (429, 503) and retry_after and time.monotonic() < deadline:
            shed[f"HTTP {response.status_code}"] += 1
            await asyncio.sleep(float(retry_after))
            continue
        errors[f"HTTP {response.status_code}"] += 1
        return None


async def submit(
    client: httpx.AsyncClient, n: int, mode: str, tag: str, on_created: Any
) -> Submission:
    errors: collections.Counter[str] = collections.Counter()
    shed: collections.Counter[str] = collections.Counter()
    inputs = [f"capacity {tag} {i}" for i in range(n)]
    ids: list[str | None] = [None] * n

    async def single(i: int) -> None:
        run = await post_with_retry(
            client, f"/api/v1/agents/{AGENT}/runs/", {"input": inputs[i]}, errors, shed
        )
        if run is not None:
            ids[i] = run["id"]
            on_created(i, run["id"])

    async def batch(start: int) -> None:
        chunk = inputs[start : start + BATCH_MAX]
        body = {"inputs": [{"input": text} for text in chunk]}
        answer = await post_with_retry(
            client, f"/api/v1/agents/{AGENT}/runs/batch/", body, errors, shed
        )
        if answer is not None:
            for offset, run_id in enumerate(batch_ids(answer)):
                ids[start + offset] = run_id
                on_created(start + offset, run_id)

    if mode == "single":
        await asyncio.gather(*(single(i) for i in range(n)))
    else:
        await asyncio.gather(*(batch(start) for start in range(0, n, BATCH_MAX)))
    return Submission(ids, errors, shed, time.time())


BATCH_MAX = 1000


def batch_ids(answer: dict[str, Any]) -> list[str]:
    runs = answer.get("runs", answer.get("results", []))
    if runs and isinstance(runs[0], dict):
        return [run["id"] for run in runs]
    return list(answer.get("ids", runs))


async def batch_available(client: httpx.AsyncClient) -> bool:
    """Whether ``POST .../runs/batch/`` exists here (an empty batch is not a 404)."""
    response = await client.post(f"/api/v1/agents/{AGENT}/runs/batch/", json={"inputs": []})
    return response.status_code not in (404, 405)


@dataclass
class Watched:
    deltas: int = 0
    gaps_ms: list[float] = field(default_factory=list)
    reconnects: int = 0
    complete: bool = False


async def watch(ws_url: str, token: str, run_id: str) -> Watched:
    """Follow a run's WebSocket to its end like the documented client (resume with
    ``after`` after a drop); the receipt time of each ``message.delta``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    watched, last_seq, last_delta = Watched(), 0, None
    headers = {"Authorization": f"Bearer {token}"}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(600):
            while True:
                url = f"{ws_url}/ws/runs/{run_id}/?after={last_seq}"
                async with connect(url, additional_headers=headers, max_queue=None) as ws:
                    with contextlib.suppress(ConnectionClosed):
                        async for raw in ws:
                            message = json.loads(raw)
                            if "seq" not in message:
                                continue
                            last_seq = message["seq"]
                            if message["type"] == "message.delta":
                                now = time.monotonic()
                                if last_delta is not None:
                                    watched.gaps_ms.append((now - last_delta) * 1000)
                                last_delta = now
                                watched.deltas += 1
                            elif message["type"] in {f"run.{t}" for t in TERMINAL}:
                                watched.complete = True
                if ws.close_code == 1000 or watched.complete:
                    return watched
                watched.reconnects += 1
    return watched


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)


RUNS_SQL = """
SELECT r.id::text, r.status, r.error_code, r.attempt,
       extract(epoch from r.created_at), extract(epoch from r.finished_at),
       r.output, count(e.id), max(e.seq),
       count(e.id) FILTER (WHERE e.type = 'message.delta'),
       string_agg(e.data->>'delta', '' ORDER BY e.seq) FILTER (WHERE e.type = 'message.delta'),
       (array_agg(e.type ORDER BY e.seq DESC))[1]
FROM agents_run r LEFT JOIN agents_runevent e ON e.run_id = r.id
WHERE r.id = ANY(%s::uuid[])
GROUP BY r.id
"""


def stored(dsn: str, ids: list[str]) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(RUNS_SQL, (ids,)).fetchall()


def unfinished(conn: psycopg.Connection[Any], ids: list[str]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM agents_run WHERE id = ANY(%s::uuid[]) AND NOT status = ANY(%s)",
        (ids, list(TERMINAL)),
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass
class Sampler:
    """While a round runs: the workers' summed RSS at its highest."""

    workers: list[int]
    peak_rss_kb: int = 0
    peak_running: int = 0  # runs the database said were running, at most (sampled)

    def sample(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, sum(rss_kb(pid) for pid in self.workers))


def cpu_snapshot(cap: Capacity, fake: FakeServer) -> dict[str, float]:
    return {
        "worker": sum(cpu_s(pid) for pid in cap.workers),
        "daphne": cpu_s(cap.daphne),
        "fake server": cpu_s(fake.proc.pid),
        "bench client": cpu_s(os.getpid()),
        "postgresql (all)": sum(cpu_s(pid) for pid in pids_named("postgres:", "bin/postgres")),
        "redis (all)": sum(cpu_s(pid) for pid in pids_named("redis-server")),
    }


async def one_round(
    cap: Capacity, fake: FakeServer, options: Options, n: int, mode: str
) -> dict[str, Any]:
    stack = cap.stack
    expected_text = "".join(f" t{i}" for i in range(options.tokens))
    await asyncio.to_thread(fake.reset)
    idle_rss = sum(rss_kb(pid) for pid in cap.workers)
    sampler = Sampler(cap.workers, idle_rss)
    load_before, cpu_before = load_1m(), cpu_snapshot(cap, fake)
    overflows_before = listen_overflows()
    step = max(1, n // max(1, options.watch))
    watchers: list[asyncio.Task[Watched]] = []

    def on_created(index: int, run_id: str) -> None:
        if index % step == 0 and len(watchers) < options.watch:
            watchers.append(asyncio.create_task(watch(stack.ws_url, stack.token, run_id)))

    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    timeout = httpx.Timeout(120, pool=None)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=headers, limits=limits, timeout=timeout
    ) as client:
        if mode == "batch" and not await batch_available(client):
            return {"config": "", "create": mode, "n": n, "skipped": "no batch endpoint"}
        began = time.time()
        submission = await submit(client, n, mode, uuid.uuid4().hex[:8], on_created)
    ids = [run_id for run_id in submission.ids if run_id]
    deadline = time.monotonic() + options.round_timeout_s
    async with await psycopg.AsyncConnection.connect(cap.dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            sampler.sample()
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE NOT status = ANY(%s)),"
                " count(*) FILTER (WHERE status = 'running')"
                " FROM agents_run WHERE id = ANY(%s::uuid[])",
                (list(TERMINAL), ids),
            )
            row = await cursor.fetchone()
            if row:
                sampler.peak_running = max(sampler.peak_running, row[1])
            if not row or not row[0]:
                break
            await asyncio.sleep(0.5)
    watched = await asyncio.gather(*watchers)
    cpu_after, load_after = cpu_snapshot(cap, fake), load_1m()
    overflows = listen_overflows() - overflows_before
    fake_stats = await asyncio.to_thread(fake.stats)
    rows = await asyncio.to_thread(stored, cap.dsn, ids)
    return summarise(
        options=options,
        n=n,
        mode=mode,
        began=began,
        submission=submission,
        rows=rows,
        watched=watched,
        fake_stats=fake_stats,
        cpu=(cpu_before, cpu_after),
        rss=(idle_rss, sampler.peak_rss_kb),
        peak_running=sampler.peak_running,
        load=(load_before, load_after),
        overflows=overflows,
        expected_text=expected_text,
    )


def summarise(
    *,
    options: Options,
    n: int,
    mode: str,
    began: float,
    submission: Submission,
    rows: list[tuple[Any, ...]],
    watched: list[Watched],
    fake_stats: dict[str, Any],
    cpu: tuple[dict[str, float], dict[str, float]],
    rss: tuple[int, int],
    peak_running: int,
    load: tuple[float, float],
    overflows: int,
    expected_text: str,
) -> dict[str, Any]:
    errors = collections.Counter(submission.errors)
    latencies, events, deltas, complete = [], [], [], 0
    attempts: collections.Counter[int] = collections.Counter()
    finished = [float(row[5]) for row in rows if row[5] is not None]
    for row in rows:
        (
            _,
            status,
            error_code,
            attempt,
            created,
            ended,
            output,
            count,
            last_seq,
            n_deltas,
            text,
            last,
        ) = row
        if status not in TERMINAL:
            errors["run not finished"] += 1
        elif status != "succeeded":
            errors[f"run {status}: {error_code or '-'}"] += 1
        attempts[attempt] += 1
        if ended is not None:
            latencies.append((float(ended) - float(created)) * 1000)
        events.append(count)
        deltas.append(n_deltas)
        if (
            status == "succeeded"
            and count == last_seq
            and last == "run.succeeded"
            and text == expected_text
            and output == expected_text
        ):
            complete += 1
    if fake_stats["repeated_prompts"]:
        errors["provider request repeated"] += fake_stats["repeated_prompts"]
    wall = (max(finished) - began) if finished else None
    tokens = fake_stats["tokens_sent"] or 1
    before, after = cpu
    gaps = [g for w in watched for g in w.gaps_ms]
    peak = fake_stats["peak_in_flight"]
    return {
        "create": mode,
        "n": n,
        "load_1m": list(load),
        "wall_s": round(wall, 1) if wall else None,
        "runs_per_s": round(len(finished) / wall, 1) if wall else None,
        "accept_s": round(submission.accepted_at - began, 1),
        "peak_in_flight": peak,
        "peak_running_in_db": peak_running,
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
        "watched_runs": len(watched),
        "watched_complete": sum(1 for w in watched if w.complete),
        "ws_reconnects": sum(w.reconnects for w in watched),
        "delta_gap_p50_ms": pct(gaps, 50),
        "delta_gap_p99_ms": pct(gaps, 99),
        "delta_gap_max_ms": round(max(gaps), 1) if gaps else None,
        "deltas_per_run_ws_median": statistics.median([w.deltas for w in watched])
        if watched
        else None,
        "deltas_per_run_stored_median": statistics.median(deltas) if deltas else None,
        "events_per_run_stored_median": statistics.median(events) if events else None,
        "events_per_run_uncoalesced": options.tokens + EVENTS_AROUND_DELTAS,
        "runs_complete": complete,
        "runs_by_attempt": dict(sorted(attempts.items())),
        "errors": dict(errors),
        "shed_and_retried": dict(submission.shed),
        "listen_queue_overflows": overflows,
        "fake_server": fake_stats,
        "worker_rss_idle_mb": round(rss[0] / 1024, 1),
        "worker_rss_peak_mb": round(rss[1] / 1024, 1),
        "rss_kb_per_in_flight_run": round((rss[1] - rss[0]) / peak, 1) if peak else None,
        "cpu_s": {part: round(after[part] - before[part], 2) for part in after},
        "cpu_us_per_token": {
            part: round(1e6 * (after[part] - before[part]) / tokens, 1) for part in after
        },
    }


# --- the whole benchmark --------------------------------------------------------------


async def warm_up(cap: Capacity) -> None:
    """A few runs first: the model client, imports and pools are warm when measuring."""
    headers = {"Authorization": f"Bearer {cap.stack.token}"}
    async with httpx.AsyncClient(base_url=cap.stack.base_url, headers=headers) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"/api/v1/agents/{AGENT}/runs/", json={"input": f"warm {i}"})
                for i in range(5)
            )
        )
    ids = [r.json()["id"] for r in responses if r.status_code == 201]
    with psycopg.connect(cap.dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while unfinished(conn, ids) and time.monotonic() < deadline:
            time.sleep(0.2)


def run_bench(options: Options) -> dict[str, Any]:
    import django
    from django.apps import apps

    if not apps.ready:  # tests.e2e.conftest imports DRF's test module: Django first
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
    report: dict[str, Any] = {
        "options": {k: v for k, v in asdict(options).items() if k not in {"pg_admin"}},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rounds": [],
    }
    with fake_server(options) as fake:
        for config in options.configs:
            with capacity_stack(config, fake, options) as cap:
                asyncio.run(warm_up(cap))
                for n in options.ns:
                    for mode in options.creates:
                        result = asyncio.run(one_round(cap, fake, options, n, mode))
                        result.update(config=config, workers=len(cap.workers))
                        report["rounds"].append(result)
                        print_round(result)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``make bench`` calls ``main()``: the defaults; the command line passes its flags."""
    # A SIGTERM (or a SIGINT where a background shell ignores it) stops the stack and
    # drops its database on the way out, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    report = run_bench(parse(argv or []))
    print_tables(report)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(report, indent=2))
    return report


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def print_round(r: dict[str, Any]) -> None:
    if "skipped" in r:
        print(f"{r['config']} {r['create']} N={r['n']}: skipped ({r['skipped']})", flush=True)
        return
    print(
        f"{r['config']} {r['create']} N={r['n']}: {r['wall_s']} s, {r['runs_per_s']} runs/s, "
        f"peak {r['peak_in_flight']}, errors {r['errors'] or 0}",
        flush=True,
    )


def _errors(r: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"


def print_tables(report: dict[str, Any]) -> None:
    o = report["options"]
    rounds = [r for r in report["rounds"] if "skipped" not in r]
    print(
        f"\nRun capacity: fake server TTFT {o['ttft_ms']:g} ms, {o['tokens']} tokens "
        f"{o['gap_ms']:g} ms apart; {report['machine']['cpus']} CPUs\n"
    )
    print(
        "| config | create | N | load 1m | wall s | runs/s | accept s "
        "| peak in flight (running in DB) | p50 ms | p99 ms | p99 delta gap ms "
        "| deltas/run | events/run (uncoalesced) "
        "| complete | errors | shed 429/503 | listen overflows |"
    )
    print("|" + "---|" * 17)
    for r in rounds:
        load = "–".join(f"{x:.1f}" for x in r["load_1m"])
        shed = sum(r["shed_and_retried"].values())
        print(
            f"| {r['config']} | {r['create']} | {r['n']} | {load} | {r['wall_s']} "
            f"| {r['runs_per_s']} | {r['accept_s']} "
            f"| {r['peak_in_flight']} ({r['peak_running_in_db']}) "
            f"| {r['latency_p50_ms']} | {r['latency_p99_ms']} | {r['delta_gap_p99_ms']} "
            f"| {r['deltas_per_run_ws_median']} | {r['events_per_run_stored_median']} "
            f"({r['events_per_run_uncoalesced']}) | {r['runs_complete']}/{r['n']} "
            f"| {_errors(r)} | {shed} | {r['listen_queue_overflows']} |"
        )
    print(
        "\n| config | create | N | worker RSS idle → peak MB | KB per in-flight run "
        "| CPU µs/token: worker | daphne | fake server | bench client | PostgreSQL (all) "
        "| Redis (all) |"
    )
    print("|" + "---|" * 11)
    for r in rounds:
        cpu = r["cpu_us_per_token"]
        print(
            f"| {r['config']} | {r['create']} | {r['n']} "
            f"| {r['worker_rss_idle_mb']} → {r['worker_rss_peak_mb']} "
            f"| {r['rss_kb_per_in_flight_run']} | {cpu['worker']} | {cpu['daphne']} "
            f"| {cpu['fake server']} | {cpu['bench client']} | {cpu['postgresql (all)']} "
            f"| {cpu['redis (all)']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
