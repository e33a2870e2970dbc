"""Whose runs a caller reaches: their own, and everyone's with agents.view_run.

alice owns runs, bob is a superuser, charlie is an outsider; an operator is a staff
account holding only the permissions a test names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agents.models import Agent, Run
from agents.selectors import agent_list, run_get
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/agents/demo-assistant/runs/"


@pytest.fixture
def alices_run(alice_api: Any, demo_agent: Any, _no_executor: list[Any]) -> str:
    return alice_api.post(RUNS, {"input": "mine"}, format="json").json()["id"]


@pytest.fixture
def _no_executor(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", started.append)
    return started


def test_staff_status_alone_shows_no_one_elses_run(
    alices_run: str, make_operator: Callable[..., Any]
) -> None:
    # given a staff account with no run permission
    olga = make_operator("olga")
    api = token_client(olga)
    # when it asks for alice's run, then it is as unknown as to an outsider
    assert api.get(f"/api/v1/runs/{alices_run}/").status_code == 404
    assert api.get("/api/v1/runs/").json()["results"] == []
    assert run_get(olga, alices_run) is None  # the WebSocket and SSE check


def test_view_run_shows_everyones_runs_but_cancelling_needs_change_run(
    alices_run: str, make_operator: Callable[..., Any]
) -> None:
    # given an operator who may view runs, and one who may also change them
    viewer = make_operator("olga", "agents.view_run")
    changer = make_operator("otto", "agents.view_run", "agents.change_run")
    # when / then the viewer sees alice's run and may stream it, but not cancel it
    assert token_client(viewer).get(f"/api/v1/runs/{alices_run}/").status_code == 200
    assert len(token_client(viewer).get("/api/v1/runs/").json()["results"]) == 1
    assert run_get(viewer, alices_run) is not None
    assert token_client(viewer).post(f"/api/v1/runs/{alices_run}/cancel/").status_code == 404
    assert Run.objects.get(pk=alices_run).status == "queued"
    # and the one with change_run may cancel it
    assert token_client(changer).post(f"/api/v1/runs/{alices_run}/cancel/").status_code == 200


def test_owners_cancel_their_own_runs_and_the_superuser_any(
    alice_api: Any, bob_api: Any, charlie_api: Any, demo_agent: Any, _no_executor: list[Any]
) -> None:
    first = alice_api.post(RUNS, {"input": "a"}, format="json").json()["id"]
    second = alice_api.post(RUNS, {"input": "b"}, format="json").json()["id"]
    assert charlie_api.post(f"/api/v1/runs/{first}/cancel/").status_code == 404
    assert alice_api.post(f"/api/v1/runs/{first}/cancel/").status_code == 200
    assert bob_api.post(f"/api/v1/runs/{second}/cancel/").status_code == 200


def test_inactive_agents_are_listed_only_with_view_agent(
    demo_agent: Agent, make_operator: Callable[..., Any], alice: Any, bob: Any
) -> None:
    Agent.objects.filter(pk=demo_agent.pk).update(is_active=False)
    assert not agent_list(make_operator("olga")).exists()
    assert not agent_list(alice).exists()
    assert agent_list(make_operator("otto", "agents.view_agent")).exists()
    assert agent_list(bob).exists()
