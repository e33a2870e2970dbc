"""The admin index as a dashboard: its numbers for known data, windows, budgets, access."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from agents.models import Agent, ModelCall, Run
from agents.services import run_create
from console.dashboard import spend_context
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_browser(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def make_run(agent: Any, owner: Any, status: str, *, age: timedelta, cost: str = "0") -> Run:
    run, _ = run_create(agent=agent, owner=owner, input="x", enqueue=False)
    created = timezone.now() - age
    Run.objects.filter(pk=run.pk).update(
        status=status,
        created_at=created,
        started_at=created + timedelta(seconds=1),
        finished_at=created + timedelta(seconds=3) if status != "running" else None,
    )
    if cost != "0":
        ModelCall.objects.create(
            run=run, agent=agent, model="demo", cost_usd=Decimal(cost), price_source="override"
        )
        ModelCall.objects.filter(run=run).update(created_at=created)
    return run


def stat(body: str, name: str) -> str:
    match = re.search(rf'data-stat="{name}">([^<]*)<', body)
    assert match, name
    return match.group(1).strip()


def test_the_dashboard_counts_the_runs_and_spend_of_the_window(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    # Given three runs today and one eight days ago
    make_run(demo_agent, alice, "succeeded", age=timedelta(hours=1), cost="0.25")
    make_run(demo_agent, alice, "succeeded", age=timedelta(hours=2), cost="0.50")
    make_run(demo_agent, alice, "failed", age=timedelta(hours=3))
    make_run(demo_agent, alice, "succeeded", age=timedelta(days=8), cost="4")
    # When the operator opens the dashboard for 24 h and for 30 d
    day = bob_browser.get("/admin/").content.decode()
    month = bob_browser.get("/admin/?window=30d").content.decode()
    # Then each counts only its window
    assert (stat(day, "runs"), stat(day, "succeeded"), stat(day, "failed")) == ("3", "2", "1")
    assert stat(day, "success_rate") == "67 %"
    assert stat(day, "duration") == "2.0 / 2.0 s"
    assert stat(day, "wait") == "1.0 / 1.0 s"
    assert stat(day, "spend") == "$0.7500"
    assert stat(month, "runs") == "4" and stat(month, "spend") == "$4.7500"
    assert 'aria-current="page" data-window="30d"' in month
    # And the spend chart has the agent's series
    assert "demo-assistant" in day and "&quot;stack&quot;: &quot;spend&quot;" in day


def test_budget_bars_turn_amber_at_80_and_red_at_100_percent(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    demo_agent.monthly_budget_usd = Decimal("1.00")
    demo_agent.save()
    make_run(demo_agent, alice, "succeeded", age=timedelta(minutes=1), cost="0.85")
    body = bob_browser.get("/admin/").content.decode()
    assert 'data-budget="demo-assistant" data-level="amber"' in body
    make_run(demo_agent, alice, "succeeded", age=timedelta(minutes=1), cost="0.20")
    body = bob_browser.get("/admin/").content.decode()
    assert 'data-budget="demo-assistant" data-level="red"' in body
    assert "(105.0 %)" in body


def test_stuck_and_waiting_runs_are_listed_with_links(
    bob_browser: Client, demo_agent: Any, alice: Any, settings: Any
) -> None:
    waiting = make_run(demo_agent, alice, "queued", age=timedelta(minutes=5))
    stuck = make_run(demo_agent, alice, "running", age=timedelta(minutes=10))
    Run.objects.filter(pk=stuck.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    body = bob_browser.get("/admin/").content.decode()
    assert f"/admin/agents/run/{waiting.pk}/change/" in body
    assert f"/admin/agents/run/{stuck.pk}/change/" in body
    assert "stale heartbeat" in body and "waiting" in body


def test_health_shows_the_readyz_checks(bob_browser: Client) -> None:
    body = bob_browser.get("/admin/").content.decode()
    assert 'data-check="database"' in body
    assert 'data-health="ok"' in body


def test_an_operator_without_run_permission_sees_no_run_numbers(make_user: Any) -> None:
    # Given dave, staff with only the agent view permission
    dave = make_user("dave")
    dave.is_staff = True
    dave.save()
    dave.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client = Client()
    client.force_login(dave)
    body = client.get("/admin/").content.decode()
    assert 'id="dash-budgets"' in body
    assert 'id="dash-runs"' not in body and 'data-stat="spend"' not in body


def test_an_unknown_window_falls_back_to_24_hours(bob_browser: Client) -> None:
    response = bob_browser.get("/admin/?window=<script>")
    assert response.status_code == 200
    assert 'aria-current="page" data-window="24h"' in response.content.decode()


def test_the_dashboard_spend_matches_the_usage_api_for_the_same_window(
    demo_agent: Any, alice: Any, bob: Any
) -> None:
    # Given runs of two agents on two models over several days
    other = Agent.objects.create(
        slug="other", name="Other", provider=demo_agent.provider, model_name="gpt-x"
    )
    for i, (agent, status) in enumerate(
        [
            (demo_agent, "succeeded"),
            (demo_agent, "failed"),
            (other, "succeeded"),
            (other, "blocked"),
        ]
        * 3
    ):
        run = make_run(agent, alice, status, age=timedelta(days=i % 6, hours=i), cost=f"0.{i + 1}")
        ModelCall.objects.filter(run=run).update(model=agent.model_name, input_tokens=10 * i)
    end = timezone.now()
    start = end - timedelta(days=7)
    # When the dashboard and the usage API summarize the same window
    page = spend_context(bob, start, end)
    query = f"from={start.isoformat()}&to={end.isoformat()}".replace("+00:00", "Z")
    api = token_client(bob)
    by_agent = api.get(f"/api/v1/usage/?{query}&group_by=agent").json()["results"]
    by_day = api.get(f"/api/v1/usage/?{query}&group_by=agent,model,day").json()["results"]
    # Then the agents table has the API's runs, tokens and cost per agent
    table = {a["agent"]: a for a in page["agents_table"]}
    assert set(table) == {"demo-assistant", "other"}
    for row in by_agent:
        line = table[row["agent"]]
        assert line["runs"] == row["runs"]["total"]
        assert line["succeeded"] == row["runs"]["succeeded"]
        assert line["tokens"] == row["input_tokens"] + row["output_tokens"]
        assert line["cost"] == Decimal(row["cost_usd"])
    assert page["total_cost"] == sum(Decimal(r["cost_usd"]) for r in by_agent)
    # And both charts put the API's cost per agent, model and day on each day
    charts = {
        "agent": json.loads(page["spend_by_agent_chart"]),
        "model": json.loads(page["spend_by_model_chart"]),
    }
    for key, chart in charts.items():
        expected: dict[tuple[str, str], Decimal] = {}
        for row in by_day:
            name_day = (row[key], row["day"])
            expected[name_day] = expected.get(name_day, Decimal(0)) + Decimal(row["cost_usd"])
        shown = {
            (dataset["label"], day): value
            for dataset in chart["datasets"]
            for day, value in zip(chart["labels"], dataset["data"], strict=True)
            if value
        }
        assert shown == {k: float(v) for k, v in expected.items() if v}
