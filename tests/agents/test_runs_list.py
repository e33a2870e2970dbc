"""The runs list: validated filters, newest first, cursor pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent, Run
from agents.thread_services import thread_create

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


@pytest.fixture
def runs(alice: Any, demo_agent: Agent) -> list[Run]:
    other = Agent.objects.create(
        slug="other", name="Other", provider=demo_agent.provider, model_name="demo"
    )
    thread = thread_create(agent=demo_agent, owner=alice)
    made = []
    now = timezone.now()
    for i, (agent, status) in enumerate(
        [
            (demo_agent, "succeeded"),
            (demo_agent, "failed"),
            (other, "succeeded"),
            (demo_agent, "queued"),
        ]
    ):
        run = Run.objects.create(
            agent=agent,
            owner=alice,
            input=f"run {i}",
            status=status,
            thread=thread if i == 1 else None,
        )
        Run.objects.filter(pk=run.pk).update(created_at=now - timedelta(hours=4 - i))
        made.append(run)
    return made


def inputs(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["input"] for r in response.json()["results"]]


def test_runs_come_newest_first(runs: list[Run], alice_api: APIClient) -> None:
    assert inputs(alice_api.get(RUNS)) == ["run 3", "run 2", "run 1", "run 0"]


def test_the_filters_combine(runs: list[Run], alice_api: APIClient) -> None:
    assert inputs(alice_api.get(RUNS, {"status": "succeeded"})) == ["run 2", "run 0"]
    assert inputs(alice_api.get(RUNS, {"agent": "other"})) == ["run 2"]
    assert inputs(alice_api.get(RUNS, {"thread": str(runs[1].thread_id)})) == ["run 1"]
    after = (timezone.now() - timedelta(hours=2, minutes=30)).isoformat()
    assert inputs(alice_api.get(RUNS, {"created_after": after})) == ["run 3", "run 2"]
    before = (timezone.now() - timedelta(hours=2, minutes=30)).isoformat()
    assert inputs(alice_api.get(RUNS, {"created_before": before, "agent": "demo-assistant"})) == [
        "run 1",
        "run 0",
    ]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"status": "finished"}, "status"),
        ({"agent": "no-such-agent"}, "agent"),
        ({"thread": "not-a-uuid"}, "thread"),
        ({"created_after": "last tuesday"}, "created_after"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_parameter(
    alice_api: APIClient, params: dict[str, str], name: str
) -> None:
    response = alice_api.get(RUNS, params)
    assert response.status_code == 400, response.content
    assert name in response.json()["error"]["details"]


def test_cursor_pages_walk_every_run_once(runs: list[Run], alice_api: APIClient) -> None:
    seen: list[str] = []
    url: str | None = f"{RUNS}?limit=3"
    while url:
        body = alice_api.get(url).json()
        seen += [r["input"] for r in body["results"]]
        url = body["next"]
    assert seen == ["run 3", "run 2", "run 1", "run 0"]


def test_others_runs_are_not_listed_without_view_run(
    runs: list[Run], charlie_api: APIClient, dave: Any
) -> None:
    from tests.conftest import token_client

    assert inputs(charlie_api.get(RUNS)) == []
    assert len(inputs(token_client(dave).get(RUNS))) == 4
