"""The run-state gauges: read from the database at scrape time, served on /metrics."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import Agent, ModelCall, Run
from agents.services import month_start, run_create, run_transition
from monitoring import collectors

# The gauges are read on a thread of their own, so the test's rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = Client().get("/metrics").content.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def make_run(agent: Agent, owner: Any, *, status: str, age_s: float = 0, beat_s: float = 0) -> Run:
    run, _ = run_create(agent=agent, owner=owner, input="hi", enqueue=False)
    if status != "queued":
        run_transition(run_id=run.id, to="running", heartbeat_at=timezone.now())
    if status == "cancelling":
        run_transition(run_id=run.id, to="cancelling")
    if status == "succeeded":
        run_transition(run_id=run.id, to="succeeded")
    now = timezone.now()
    Run.objects.filter(pk=run.id).update(
        created_at=now - timedelta(seconds=age_s),
        heartbeat_at=(now - timedelta(seconds=beat_s)) if status != "queued" else None,
    )
    return run


def test_the_gauges_count_unfinished_runs_stale_heartbeats_and_the_oldest_queued(
    settings: Any, alice: Any, demo_agent: Agent
) -> None:
    # Given runs in every unfinished status, one of them with a stale heartbeat
    settings.RUN_STALE_AFTER_S = 15
    make_run(demo_agent, alice, status="queued", age_s=120)
    make_run(demo_agent, alice, status="queued", age_s=5)
    make_run(demo_agent, alice, status="running", beat_s=1)
    make_run(demo_agent, alice, status="running", beat_s=60)  # its worker is gone
    make_run(demo_agent, alice, status="cancelling", beat_s=2)
    make_run(demo_agent, alice, status="succeeded")  # finished: not counted
    # When Prometheus scrapes
    samples = scrape()
    # Then the gauges say what is waiting, running and stuck right now
    assert value(samples, "switchyard_run_state_up") == 1
    assert value(samples, "switchyard_runs_in_status", status="queued") == 2
    assert value(samples, "switchyard_runs_in_status", status="running") == 2
    assert value(samples, "switchyard_runs_in_status", status="cancelling") == 1
    assert value(samples, "switchyard_runs_stale") == 1
    oldest = value(samples, "switchyard_oldest_queued_run_age_seconds")
    assert oldest is not None and 119 <= oldest < 180


def test_with_nothing_unfinished_every_gauge_reads_zero(db: None) -> None:
    samples = scrape()
    for status in ("queued", "running", "cancelling"):
        assert value(samples, "switchyard_runs_in_status", status=status) == 0
    assert value(samples, "switchyard_runs_stale") == 0
    assert value(samples, "switchyard_oldest_queued_run_age_seconds") == 0


def test_the_budget_ratio_is_this_months_spend_over_the_budget(
    alice: Any, demo_agent: Agent
) -> None:
    # Given an agent with a $10 budget: $9.50 spent this month, $100 last month
    demo_agent.monthly_budget_usd = Decimal("10.00")
    demo_agent.save()
    run = make_run(demo_agent, alice, status="succeeded")
    for cost, at in (
        (Decimal("4.25"), timezone.now()),
        (Decimal("5.25"), timezone.now()),
        (Decimal("100"), month_start() - timedelta(days=1)),
    ):
        call = ModelCall.objects.create(
            run=run, agent=demo_agent, model="demo", cost_usd=cost, price_source="override"
        )
        ModelCall.objects.filter(pk=call.pk).update(created_at=at)
    # When Prometheus scrapes
    samples = scrape()
    # Then the agent has spent 95 % of this month's budget; agents without one are absent
    assert value(samples, "switchyard_agent_budget_used_ratio", agent=demo_agent.slug) == 0.95
    agents = {labels for (name, labels) in samples if name == "switchyard_agent_budget_used_ratio"}
    assert agents == {(("agent", demo_agent.slug),)}


def test_a_stuck_database_costs_a_scrape_the_budget_not_the_scrape(
    monkeypatch: pytest.MonkeyPatch, alice: Any, demo_agent: Agent
) -> None:
    # Given a database where reading the runs table blocks (another session holds an
    # exclusive lock on it, as a migration might)
    monkeypatch.setattr(collectors, "QUERY_BUDGET_S", 0.5)
    make_run(demo_agent, alice, status="queued")
    params = connection.get_connection_params()
    dsn = " ".join(f"{k}={v}" for k, v in params.items() if k in {"host", "port", "user", "dbname"})
    with psycopg.connect(dsn) as locker:
        locker.execute(f"LOCK TABLE {Run._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        # When Prometheus scrapes, twice
        for _ in range(2):
            started = time.monotonic()
            samples = scrape()
            # Then each scrape answers within the budget, says the gauges could not be
            # read, and still carries the other metrics
            assert time.monotonic() - started < 3
            assert value(samples, "switchyard_run_state_up") == 0
            assert value(samples, "switchyard_runs_in_status", status="queued") is None
            assert any(name == "python_info" for name, _ in samples)
        locker.rollback()  # the lock goes
    # And once the table is free the gauges are back
    deadline = time.monotonic() + 10
    while value(samples := scrape(), "switchyard_run_state_up") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert value(samples, "switchyard_runs_in_status", status="queued") == 1


def test_registering_does_not_touch_the_database(django_assert_num_queries: Any) -> None:
    # The app registers the collector at start, when the database may not exist yet.
    collectors.unregister()
    try:
        with django_assert_num_queries(0):
            collectors.register()
    finally:
        collectors.register()
