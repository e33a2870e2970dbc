"""Usage: the selector's groups and figures, and who sees which runs' usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from agents.models import Agent, ModelCall, PriceSource, Run
from agents.selectors import usage_summary

pytestmark = pytest.mark.django_db

DAY1 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
WINDOW = {"start": datetime(2026, 11, 1, tzinfo=UTC), "end": datetime(2026, 12, 1, tzinfo=UTC)}


def make_run(
    agent: Agent, owner: Any, *, at: datetime, status: str, seconds: float, calls: int = 1
) -> Run:
    run = Run.objects.create(
        agent=agent, owner=owner, input="x", status=status, config={"model_name": agent.model_name}
    )
    Run.objects.filter(pk=run.pk).update(
        created_at=at, started_at=at, finished_at=at + timedelta(seconds=seconds)
    )
    for _ in range(calls):
        call = ModelCall.objects.create(
            run=run,
            agent=agent,
            model=agent.model_name,
            input_tokens=100,
            output_tokens=10,
            cached_tokens=5,
            cost_usd=Decimal("0.00012500"),
            price_source=PriceSource.PRICE_TABLE,
        )
        ModelCall.objects.filter(pk=call.pk).update(created_at=at)
    return run


@pytest.fixture
def ledger(demo_agent: Agent, alice: Any, charlie: Any) -> Agent:
    other = Agent.objects.create(
        slug="other", name="Other", provider=demo_agent.provider, model_name="gpt-x"
    )
    make_run(demo_agent, alice, at=DAY1, status="succeeded", seconds=1, calls=2)
    make_run(demo_agent, alice, at=DAY1, status="succeeded", seconds=3)
    make_run(demo_agent, alice, at=DAY2, status="failed", seconds=5)
    make_run(other, charlie, at=DAY2, status="succeeded", seconds=10)
    return other


def test_usage_by_agent_counts_runs_by_status_tokens_cost_and_durations(
    ledger: Agent, bob: Any
) -> None:
    rows = usage_summary(user=bob, group_by=["agent"], **WINDOW)
    assert [r["agent"] for r in rows] == ["demo-assistant", "other"]
    demo = rows[0]
    assert demo["runs"]["total"] == 3
    assert demo["runs"]["succeeded"] == 2
    assert demo["runs"]["failed"] == 1
    assert demo["model_requests"] == 4
    assert (demo["input_tokens"], demo["output_tokens"], demo["cached_tokens"]) == (400, 40, 20)
    assert demo["cost_usd"] == Decimal("0.0005")
    assert demo["duration_p50_s"] == 3.0
    assert demo["duration_p95_s"] == pytest.approx(4.8)


def test_usage_by_agent_and_day_splits_the_days(ledger: Agent, bob: Any) -> None:
    rows = usage_summary(user=bob, group_by=["agent", "day"], **WINDOW)
    keys = [(r["agent"], str(r["day"]), r["runs"]["total"]) for r in rows]
    assert keys == [
        ("demo-assistant", "2026-11-02", 2),
        ("demo-assistant", "2026-11-03", 1),
        ("other", "2026-11-03", 1),
    ]


def test_usage_by_model_groups_ledger_and_runs_by_model(ledger: Agent, bob: Any) -> None:
    rows = usage_summary(user=bob, group_by=["model"], **WINDOW)
    assert [(r["model"], r["runs"]["total"], r["model_requests"]) for r in rows] == [
        ("demo", 3, 4),
        ("gpt-x", 1, 1),
    ]


def test_a_user_sees_only_the_usage_of_their_own_runs(
    ledger: Agent, alice: Any, charlie: Any
) -> None:
    assert [r["agent"] for r in usage_summary(user=charlie, group_by=["agent"], **WINDOW)] == [
        "other"
    ]
    charlie.user_permissions.add(Permission.objects.get(codename="view_run"))
    charlie = type(charlie).objects.get(pk=charlie.pk)
    rows = usage_summary(user=charlie, group_by=["agent"], **WINDOW)
    assert [r["agent"] for r in rows] == ["demo-assistant", "other"]


def test_the_window_and_the_agent_filter_bound_what_counts(ledger: Agent, bob: Any) -> None:
    rows = usage_summary(
        user=bob, group_by=["day"], start=DAY2 - timedelta(hours=1), end=WINDOW["end"]
    )
    assert [(str(r["day"]), r["runs"]["total"]) for r in rows] == [("2026-11-03", 2)]
    rows = usage_summary(user=bob, group_by=["day"], agent=ledger, **WINDOW)
    assert [(str(r["day"]), r["model_requests"]) for r in rows] == [("2026-11-03", 1)]
