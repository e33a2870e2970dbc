"""The admin dashboard's server time on 100,000 runs and 100,000 ledger rows (a script).

Run: DATABASE_URL=postgres://.../<db> .venv/bin/python tests/perf/bench_dashboard.py
It creates (and afterwards drops) a database of its own, ``<db>_dashbench``, fills it
with SQL (runs and model calls spread over 30 days and 10 agents, every status), then
times GET /admin/?window=... through Django's test client: the view, its queries and
the template, i.e. the server's share of the page. Prints a table and writes
var/bench/dashboard.json. The target is under 300 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

N_RUNS = int(os.environ.get("DASHBENCH_RUNS", "100000"))
N_AGENTS = 10
REPEAT = 7
TARGET_MS = 300.0


def bench_database_url() -> tuple[str, str, str]:
    """(admin DSN, bench database URL, bench database name) from DATABASE_URL."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchyard")
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'switchyard'}_dashbench"
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    return admin, urlunsplit(parts._replace(path=f"/{name}")), name


def fill(n_runs: int) -> None:
    """Runs and one model call each, by SQL: every status, 30 days, 10 agents."""
    from django.db import connection

    from agents.models import Agent, Provider, ProviderKind

    provider = Provider.objects.create(name="bench", kind=ProviderKind.OPENAI)
    for i in range(N_AGENTS):
        Agent.objects.create(
            slug=f"agent-{i}",
            name=f"Agent {i}",
            provider=provider,
            model_name=f"model-{i % 3}",
            monthly_budget_usd=100 + i,
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM auth_user ORDER BY id LIMIT 1")
        owner = cursor.fetchone()[0]
        cursor.execute("SELECT id FROM agents_agent ORDER BY id")
        agents = [row[0] for row in cursor.fetchall()]
        statuses = "ARRAY['succeeded','succeeded','succeeded','succeeded','failed','cancelled',"
        statuses += "'blocked','timed_out','succeeded','queued']"
        cursor.execute(
            f"""
            INSERT INTO agents_run (id, agent_id, owner_id, status, input, output, error_code,
                error_message, config, limits, messages, depth, attempt, idempotency_fingerprint,
                created_at, started_at,
                finished_at, requests, input_tokens, output_tokens, tool_calls, usage_estimated,
                cost_usd)
            SELECT md5(i::text)::uuid, (%s::int[])[1 + i %% {N_AGENTS}], %s,
                s.status, 'bench', 'ok', '', '',
                jsonb_build_object('model_name', 'model-' || (i %% 3)), '{{}}', '[]', 0, 1, '',
                t.created, t.created + interval '1 second' * (i %% 5),
                CASE WHEN s.status = 'queued' THEN NULL
                     ELSE t.created + interval '1 second' * (5 + i %% 20) END,
                1, 100, 50, 0, false, 0.001
            -- random() per row: a LATERAL subquery that does not use i runs once, which
            -- put every run at the same instant.
            FROM (SELECT n AS i, now() - interval '30 days' * random() AS created
                  FROM generate_series(1, %s) AS n) t
            CROSS JOIN LATERAL (SELECT ({statuses})[1 + t.i %% 10] AS status) s
            """,
            [agents, owner, n_runs],
        )
        cursor.execute(
            """
            INSERT INTO agents_modelcall (run_id, agent_id, model, attempt, input_tokens,
                output_tokens, cached_tokens, usage_estimated, cost_usd, price_source,
                latency_ms, created_at)
            SELECT id, agent_id, config->>'model_name', 1, 100, 50, 0, false, 0.001,
                'price_table', 100, created_at
            FROM agents_run
            """
        )
        cursor.execute("ANALYZE")


def time_dashboard(client: object, window: str) -> dict[str, float]:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        response = client.get(f"/admin/?window={window}")  # type: ignore[attr-defined]
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    times = times[1:]  # the first request warms the template and connection caches
    return {
        "window": window,
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
    }


def print_queries(client: object, window: str) -> None:
    """The page's queries for one window, slowest first (Django's own timing of each)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(f"/admin/?window={window}")  # type: ignore[attr-defined]
    timed = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))
    total = sum(float(q["time"]) for q in timed) * 1000
    print(f"{window}: {len(timed)} queries, {total:.0f} ms in the database; slowest:")
    for query in timed[:5]:
        print(f"  {float(query['time']) * 1000:7.1f} ms  {query['sql'][:150]}")


def main() -> None:
    import psycopg

    admin, url, name = bench_database_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("REDIS_URL", "")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    try:
        call_command("migrate", "--noinput", verbosity=0)
        user = get_user_model().objects.create_superuser("bench", "", "bench-password")
        started = time.perf_counter()
        fill(N_RUNS)
        print(f"filled {N_RUNS} runs and ledger rows in {time.perf_counter() - started:.1f} s")
        client = Client()
        client.force_login(user)
        rows = [time_dashboard(client, w) for w in ("24h", "7d", "30d")]
        for window in ("24h", "30d"):
            print_queries(client, window)
    finally:
        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{'window':>8} {'median ms':>10} {'max ms':>8}")
    for row in rows:
        print(f"{row['window']:>8} {row['median_ms']:>10} {row['max_ms']:>8}")
    worst = max(r["median_ms"] for r in rows)
    print(f"target < {TARGET_MS:.0f} ms server time: {'met' if worst < TARGET_MS else 'MISSED'}")
    out = ROOT / "var" / "bench" / "dashboard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": N_RUNS, "ledger_rows": N_RUNS, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
