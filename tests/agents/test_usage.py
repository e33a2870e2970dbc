"""Usage: the selector's groups and figures, and who sees which runs' usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from agents.models import Agent, ModelCall, PriceSource, Run
from agents.selectors import usage_summarize
from tests.conftest import token_client

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
    rows = usage_summarize(user=bob, group_by=["agent"], **WINDOW)
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
    rows = usage_summarize(user=bob, group_by=["agent", "day"], **WINDOW)
    keys = [(r["agent"], str(r["day"]), r["runs"]["total"]) for r in rows]
    assert keys == [
        ("demo-assistant", "2026-11-02", 2),
        ("demo-assistant", "2026-11-03", 1),
        ("other", "2026-11-03", 1),
    ]


def test_usage_by_model_groups_ledger_and_runs_by_model(ledger: Agent, bob: Any) -> None:
    rows = usage_summarize(user=bob, group_by=["model"], **WINDOW)
    assert [(r["model"], r["runs"]["total"], r["model_requests"]) for r in rows] == [
        ("demo", 3, 4),
        ("gpt-x", 1, 1),
    ]


def test_a_user_sees_only_the_usage_of_their_own_runs(
    ledger: Agent, alice: Any, charlie: Any
) -> None:
    assert [r["agent"] for r in usage_summarize(user=charlie, group_by=["agent"], **WINDOW)] == [
        "other"
    ]
    charlie.user_permissions.add(Permission.objects.get(codename="view_run"))
    charlie = type(charlie).objects.get(pk=charlie.pk)
    rows = usage_summarize(user=charlie, group_by=["agent"], **WINDOW)
    assert [r["agent"] for r in rows] == ["demo-assistant", "other"]


def test_the_window_and_the_agent_filter_bound_what_counts(ledger: Agent, bob: Any) -> None:
    rows = usage_summarize(
        user=bob, group_by=["day"], start=DAY2 - timedelta(hours=1), end=WINDOW["end"]
    )
    assert [(str(r["day"]), r["runs"]["total"]) for r in rows] == [("2026-11-03", 2)]
    rows = usage_summarize(user=bob, group_by=["day"], agent=ledger, **WINDOW)
    assert [(str(r["day"]), r["model_requests"]) for r in rows] == [("2026-11-03", 1)]


# --- GET /api/v1/usage/ -----------------------------------------------------------------

USAGE = "/api/v1/usage/?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z"


def test_the_usage_endpoint_returns_groups_with_money_as_fixed_decimal_strings(
    ledger: Agent, alice_api: APIClient
) -> None:
    response = alice_api.get(USAGE + "&group_by=agent,day")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_by"] == ["agent", "day"]
    assert [(r["agent"], r["day"]) for r in body["results"]] == [
        ("demo-assistant", "2026-11-02"),
        ("demo-assistant", "2026-11-03"),
    ]
    first = body["results"][0]
    assert first["cost_usd"] == "0.000375"
    assert first["runs"]["succeeded"] == 2
    assert "model" not in first


def test_usage_without_runs_costs_a_fixed_place_zero_not_0e_8(
    alice: Any, alice_api: APIClient, demo_agent: Agent
) -> None:
    make_run(demo_agent, alice, at=DAY1, status="succeeded", seconds=1, calls=0)
    ModelCall.objects.create(
        run=Run.objects.get(),
        agent=demo_agent,
        model="demo",
        cost_usd=Decimal("0E-8"),
        price_source=PriceSource.FREE,
    )
    ModelCall.objects.update(created_at=DAY1)
    rows = alice_api.get(USAGE).json()["results"]
    assert rows[0]["cost_usd"] == "0.000000"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group_by=owner", "group_by"),
        ("group_by=agent,agent", "group_by"),
        ("agent=no-such-agent", "agent"),
        ("from=yesterday", "from"),
        ("from=2026-11-05T00:00:00Z&to=2026-11-01T00:00:00Z", "from"),
        ("from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("grup_by=agent", "grup_by"),
    ],
)
def test_bad_usage_parameters_are_a_400_naming_the_parameter(
    alice_api: APIClient, query: str, field: str
) -> None:
    response = alice_api.get(f"/api/v1/usage/?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("persona", "agents"),
    [
        ("alice", ["demo-assistant"]),
        ("bob", ["demo-assistant", "other"]),
        ("charlie", ["other"]),
        ("dave", ["demo-assistant", "other"]),
    ],
)
def test_each_persona_sees_the_usage_they_may(
    ledger: Agent, persona: str, agents: list[str], request: pytest.FixtureRequest
) -> None:
    client = token_client(request.getfixturevalue(persona))
    rows = client.get(USAGE + "&group_by=agent").json()["results"]
    assert [r["agent"] for r in rows] == agents


def test_usage_needs_authentication() -> None:
    assert APIClient().get("/api/v1/usage/").status_code == 401
