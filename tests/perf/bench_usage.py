"""The usage queries on 100,000 ledger rows: EXPLAIN ANALYZE of each, and the endpoint's
wall time (docs/performance.md, "Usage").

    DATABASE_URL=postgres://... .venv/bin/python tests/perf/bench_usage.py [--rows 100000]

It creates a scratch database, fills it (20 agents, 25 owners, 50,000 runs, ``--rows``
ModelCall rows over 30 days), runs ``usage_summarize`` for each grouping as a superuser (all
runs) and as one owner, prints the plans' execution times and drops the database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    scratch = f"sy_bench_usage_{uuid.uuid4().hex[:6]}"
    import psycopg

    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + f"/{scratch}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        run(args.rows)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def run(rows: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.backends.utils import CursorWrapper
    from django.utils import timezone

    from agents.selectors import usage_summarize

    users = get_user_model()
    root = users.objects.create_superuser("root", password="bench-root-1")
    owner_ids = [users.objects.create_user(f"u{i}").pk for i in range(25)]
    from agents.models import Agent, Provider

    provider = Provider.objects.create(name="demo", kind="demo")
    agent_ids = [
        Agent.objects.create(
            slug=f"a{i}", name=f"a{i}", provider=provider, model_name=f"m{i % 4}"
        ).pk
        for i in range(20)
    ]
    runs = rows // 2
    start = time.perf_counter()
    with connection.cursor() as cur:
        # Set-based fill: runs spread over 30 days, two ledger rows per run on average.
        cur.execute(
            """
            INSERT INTO agents_run (id, agent_id, owner_id, status, input, output, error_code,
              error_message, config, limits, messages, depth, attempt, created_at, started_at,
              finished_at, requests, input_tokens, output_tokens, tool_calls, usage_estimated,
              cost_usd, idempotency_fingerprint)
            SELECT md5(g::text)::uuid, (%s::int[])[1 + g %% 20], (%s::int[])[1 + g %% 25],
              (ARRAY['succeeded','succeeded','succeeded','failed','timed_out',
                     'cancelled'])[1 + g %% 6],
              'x', '', '', '', jsonb_build_object('model_name', 'm' || (g %% 4)), '{}', '[]', 0, 1,
              now() - (g %% 43200) * interval '1 minute',
              now() - (g %% 43200) * interval '1 minute',
              now() - (g %% 43200) * interval '1 minute' + (g %% 90) * interval '1 second',
              2, 200, 50, 0, false, 0.0002, ''
            FROM generate_series(1, %s) g
            """,
            [agent_ids, owner_ids, runs],
        )
        cur.execute(
            """
            INSERT INTO agents_modelcall (run_id, agent_id, provider_id, model, attempt,
              input_tokens, output_tokens, cached_tokens, usage_estimated, cost_usd,
              price_source, latency_ms, created_at)
            SELECT r.id, r.agent_id, %s, r.config->>'model_name', 1, 100, 25, 10, false,
              0.0001, 'genai_prices', 300, r.created_at + k * interval '1 second'
            FROM agents_run r CROSS JOIN generate_series(1, 2) k
            """,
            [provider.pk],
        )
        cur.execute("ANALYZE agents_run; ANALYZE agents_modelcall;")
        cur.execute("SELECT count(*) FROM agents_modelcall")
        ledger = cur.fetchone()[0]
    print(f"filled {runs} runs and {ledger} ledger rows in {time.perf_counter() - start:.1f} s")

    end = timezone.now() + timedelta(minutes=1)
    window = {"start": end - timedelta(days=30), "end": end}
    owner = users.objects.get(pk=owner_ids[0])
    cases = [
        ("agent", root),
        ("model", root),
        ("day", root),
        ("agent,day", root),
        ("agent", owner),
        ("agent,day", owner),
    ]
    line = "{:<10} {:<6} {:>6} {:>13} {:>10} {:>9}"
    print(line.format("group_by", "as", "groups", "run query ms", "ledger ms", "total ms"))
    for group_by, user in cases:
        plans: list[float] = []
        original = CursorWrapper.execute

        def explaining(self, sql, params=None, plans=plans, original=original):
            if sql.lstrip().upper().startswith("SELECT") and "GROUP BY" in sql:
                with connection.connection.cursor() as raw:
                    raw.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                    plans.append(raw.fetchone()[0][0]["Execution Time"])
            return original(self, sql, params)

        CursorWrapper.execute = explaining  # type: ignore[method-assign]
        try:
            usage_summarize(user=user, group_by=group_by.split(","), **window)
        finally:
            CursorWrapper.execute = original  # type: ignore[method-assign]
        t0 = time.perf_counter()
        result = usage_summarize(user=user, group_by=group_by.split(","), **window)
        total = (time.perf_counter() - t0) * 1000
        who = "all" if user is root else "owner"
        run_ms, ledger_ms = (plans + [0.0, 0.0])[:2]
        figures = (f"{run_ms:.1f}", f"{ledger_ms:.1f}", f"{total:.1f}")
        print(line.format(group_by, who, len(result), *figures))


if __name__ == "__main__":
    main()
