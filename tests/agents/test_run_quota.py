"""The per-owner quota on runs queued or running, and the per-token rate of run creation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections
from django.test import Client
from rest_framework.test import APIClient

from agents.lifecycle import RunStatus
from agents.models import Run, RunQuota
from agents.services import run_create
from core.errors import RateLimitedError
from core.throttles import RunCreateRateThrottle
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/agents/demo-assistant/runs/"


@pytest.fixture(autouse=True)
def _no_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)


@pytest.fixture
def limit_of_two(settings: Any) -> None:
    settings.RUNS_MAX_ACTIVE_PER_OWNER = 2


def create(client: APIClient, text: str = "hi") -> Any:
    return client.post(RUNS, {"input": text}, format="json")


def test_beyond_the_limit_a_create_is_a_429_too_many_runs_with_retry_after(
    limit_of_two: None, alice_api: APIClient, demo_agent: Any
) -> None:
    assert [create(alice_api).status_code for _ in range(2)] == [201, 201]
    response = create(alice_api)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "too_many_runs"
    assert error["details"] == {"limit": 2, "active": 2, "requested": 1}
    assert Run.objects.count() == 2


def test_finished_runs_free_their_place_and_running_ones_do_not(
    limit_of_two: None, alice_api: APIClient, demo_agent: Any
) -> None:
    first, second = (create(alice_api).json()["id"] for _ in range(2))
    Run.objects.filter(pk=first).update(status=RunStatus.RUNNING)
    assert create(alice_api).status_code == 429
    Run.objects.filter(pk=second).update(status=RunStatus.SUCCEEDED)
    assert create(alice_api).status_code == 201


def test_each_owner_has_a_quota_of_its_own(
    limit_of_two: None, alice_api: APIClient, charlie_api: APIClient, demo_agent: Any
) -> None:
    for _ in range(2):
        create(alice_api)
    assert create(alice_api).status_code == 429
    assert create(charlie_api).status_code == 201


def test_zero_is_unlimited(settings: Any, alice_api: APIClient, demo_agent: Any) -> None:
    settings.RUNS_MAX_ACTIVE_PER_OWNER = 0
    assert {create(alice_api).status_code for _ in range(5)} == {201}


def test_a_users_override_wins_over_the_default_both_ways(
    limit_of_two: None, alice: Any, alice_api: APIClient, demo_agent: Any
) -> None:
    quota = RunQuota.objects.create(user=alice, max_active_runs=1)
    assert [create(alice_api).status_code for _ in range(2)] == [201, 429]
    quota.max_active_runs = 0  # unlimited for this user
    quota.save()
    assert {create(alice_api).status_code for _ in range(3)} == {201}
    quota.max_active_runs = None  # back to the default (2), which 4 runs exceed
    quota.save()
    assert create(alice_api).status_code == 429


def test_an_idempotent_replay_at_the_limit_still_returns_the_run(
    limit_of_two: None, alice_api: APIClient, demo_agent: Any
) -> None:
    first = alice_api.post(RUNS, {"input": "k"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    create(alice_api)
    again = alice_api.post(RUNS, {"input": "k"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


def test_a_delegated_child_run_is_not_refused(
    limit_of_two: None, alice: Any, demo_agent: Any
) -> None:
    parent, _ = run_create(agent=demo_agent, owner=alice, input="p")
    run_create(agent=demo_agent, owner=alice, input="q")
    with pytest.raises(RateLimitedError):
        run_create(agent=demo_agent, owner=alice, input="r")
    child, created = run_create(
        agent=demo_agent, owner=alice, input="c", parent=parent, enqueue=False
    )
    assert created and child.parent_id == parent.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_at_the_limit_never_overshoot_it(
    settings: Any, alice: Any, demo_agent: Any
) -> None:
    # Given a limit of 3 and 12 creates racing for it, each on its own connection
    settings.RUNS_MAX_ACTIVE_PER_OWNER = 3
    start = threading.Barrier(12)
    outcomes: list[str] = []

    def one(i: int) -> None:
        start.wait()
        try:
            run_create(agent=demo_agent, owner=alice, input=f"race {i}")
            outcomes.append("created")
        except RateLimitedError as exc:
            outcomes.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly the limit was created: the advisory lock made count-then-insert atomic
    assert sorted(outcomes) == ["created"] * 3 + ["too_many_runs"] * 9
    assert Run.objects.filter(owner=alice).count() == 3


# --- The admin: a per-user override, behind the model permissions ---------------------


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_operator_with_the_permission_sets_a_users_quota_in_the_admin(
    make_operator: Callable[..., Any], alice: Any, alice_api: APIClient, demo_agent: Any
) -> None:
    operator = make_operator("olga", "agents.add_runquota", "agents.view_runquota")
    response = browser(operator).post(
        "/admin/agents/runquota/add/", {"user": alice.pk, "max_active_runs": "1"}
    )
    assert response.status_code == 302, response.content[:2000]
    assert RunQuota.objects.get(user=alice).max_active_runs == 1
    assert [create(alice_api).status_code for _ in range(2)] == [201, 429]
    listing = browser(operator).get("/admin/agents/runquota/")
    assert listing.status_code == 200
    assert "alice" in listing.content.decode()


def test_the_quota_admin_needs_its_model_permission(
    make_operator: Callable[..., Any], alice: Any
) -> None:
    operator = make_operator("oscar", "agents.view_run")
    client = browser(operator)
    assert client.get("/admin/agents/runquota/").status_code == 403
    response = client.post("/admin/agents/runquota/add/", {"user": alice.pk, "max_active_runs": 0})
    assert response.status_code == 403
    assert not RunQuota.objects.exists()


# --- The per-token rate of run creation -------------------------------------------------


@pytest.fixture
def two_creates_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        RunCreateRateThrottle, "THROTTLE_RATES", {"run_create": "2/min", "token": "100/min"}
    )
    cache.clear()


def test_the_third_create_of_a_token_in_a_minute_is_a_429_throttled(
    two_creates_per_minute: None, alice: Any, demo_agent: Any
) -> None:
    client = token_client(alice)
    assert [create(client).status_code for _ in range(2)] == [201, 201]
    response = create(client)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "throttled"
    # Other requests of the token are not creations; another token counts on its own.
    assert client.get("/api/v1/runs/").status_code == 200
    assert create(token_client(alice)).status_code == 201


def test_a_session_is_counted_per_user(
    two_creates_per_minute: None, alice: Any, demo_agent: Any
) -> None:
    client = APIClient()
    client.force_login(alice)
    statuses = [create(client).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
