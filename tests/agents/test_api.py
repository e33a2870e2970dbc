"""REST API: creating and reading runs, errors in one shape, object-level permissions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/agents/demo-assistant/runs/"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture(autouse=True)
def _no_executor(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """These tests are about the API; runs stay queued (the executor is tested end to end)."""
    started: list[Any] = []
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", started.append)
    return started


def test_it_creates_a_run_and_returns_201(alice_api: APIClient, demo_agent: Any) -> None:
    response = alice_api.post(RUNS, {"input": "What is 12*7?"}, format="json")
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "queued"
    assert run["agent"] == "demo-assistant"
    assert run["owner"] == "alice"
    assert run["links"]["websocket"] == f"/ws/runs/{run['id']}/"
    events = alice_api.get(f"/api/v1/runs/{run['id']}/events/").json()["events"]
    assert [(e["seq"], e["type"]) for e in events] == [(1, "run.queued")]


def test_malformed_json_is_a_400(alice_api: APIClient, demo_agent: Any) -> None:
    response = alice_api.post(RUNS, "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_request")


def test_a_missing_input_is_a_400_naming_the_field(alice_api: APIClient, demo_agent: Any) -> None:
    error = assert_error(alice_api.post(RUNS, {}, format="json"), 400, "invalid_request")
    assert "input" in error["details"]


def test_an_unknown_field_is_a_400(alice_api: APIClient, demo_agent: Any) -> None:
    response = alice_api.post(RUNS, {"input": "x", "inptu": "y"}, format="json")
    error = assert_error(response, 400, "invalid_request")
    assert "inptu" in error["details"]


def test_a_non_object_body_is_a_400(alice_api: APIClient, demo_agent: Any) -> None:
    assert_error(alice_api.post(RUNS, [1, 2], format="json"), 400, "invalid_request")
    assert_error(alice_api.post(RUNS, {"input": 5}, format="json"), 400, "invalid_request")


def test_an_unknown_agent_is_a_404(alice_api: APIClient, demo_agent: Any) -> None:
    response = alice_api.post("/api/v1/agents/nope/runs/", {"input": "x"}, format="json")
    assert_error(response, 404, "agent_not_found")


def test_an_inactive_agent_is_a_409(alice_api: APIClient, demo_agent: Any) -> None:
    demo_agent.is_active = False
    demo_agent.save()
    assert_error(alice_api.post(RUNS, {"input": "x"}, format="json"), 409, "agent_inactive")


@override_settings(RUN_MAX_INPUT_CHARS=100)
def test_an_oversized_input_is_a_400(alice_api: APIClient, demo_agent: Any) -> None:
    response = alice_api.post(RUNS, {"input": "x" * 101}, format="json")
    assert_error(response, 400, "input_too_long")


def test_an_oversized_body_is_a_413(alice_api: APIClient, demo_agent: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = alice_api.post(RUNS, {"input": "x" * 2000}, format="json")
    assert_error(response, 413, "request_too_large")


def test_anonymous_requests_are_a_401(demo_agent: Any) -> None:
    assert_error(APIClient().post(RUNS, {"input": "x"}, format="json"), 401, "not_authenticated")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer sy_" + "0" * 64)
    assert_error(bad.get("/api/v1/agents/"), 401, "authentication_failed")


def test_users_see_only_their_own_runs_and_staff_see_all(
    alice_api: APIClient, bob_api: APIClient, charlie_api: APIClient, demo_agent: Any
) -> None:
    run = alice_api.post(RUNS, {"input": "mine"}, format="json").json()
    detail = f"/api/v1/runs/{run['id']}/"
    assert alice_api.get(detail).status_code == 200
    assert bob_api.get(detail).status_code == 200
    assert_error(charlie_api.get(detail), 404, "not_found")
    assert_error(charlie_api.get(detail + "events/"), 404, "not_found")
    assert_error(charlie_api.post(detail + "cancel/"), 404, "not_found")
    assert charlie_api.get("/api/v1/runs/").json()["results"] == []
    assert len(bob_api.get("/api/v1/runs/").json()["results"]) == 1
    assert_error(alice_api.get("/api/v1/runs/not-a-uuid/"), 404, "not_found")


# Counts the hand-overs, which run_create makes on commit: the rows must really commit.
@pytest.mark.django_db(transaction=True)
def test_the_same_idempotency_key_returns_the_same_run(
    alice_api: APIClient, charlie_api: APIClient, demo_agent: Any, _no_executor: list[Any]
) -> None:
    first = alice_api.post(RUNS, {"input": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = alice_api.post(RUNS, {"input": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    other = charlie_api.post(RUNS, {"input": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert len(_no_executor) == 2


def test_events_are_paged_by_after_and_limit(alice_api: APIClient, demo_agent: Any) -> None:
    run = alice_api.post(RUNS, {"input": "x"}, format="json").json()
    url = f"/api/v1/runs/{run['id']}/events/"
    assert alice_api.get(url, {"after": 1}).json()["events"] == []
    assert_error(alice_api.get(url, {"after": -1}), 400, "invalid_request")
    assert_error(alice_api.get(url, {"limit": 0}), 400, "invalid_request")
    assert_error(alice_api.get(url, {"after": "x"}), 400, "invalid_request")


def test_cancel_of_a_queued_run_cancels_it_and_is_idempotent(
    alice_api: APIClient, demo_agent: Any
) -> None:
    run = alice_api.post(RUNS, {"input": "x"}, format="json").json()
    url = f"/api/v1/runs/{run['id']}/cancel/"
    first, again = alice_api.post(url), alice_api.post(url)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == again.json()["status"] == "cancelled"
    events = alice_api.get(f"/api/v1/runs/{run['id']}/events/").json()["events"]
    assert [e["type"] for e in events] == ["run.queued", "run.cancelled"]


def test_the_agent_list_shows_active_agents(alice_api: APIClient, demo_agent: Any) -> None:
    body = alice_api.get("/api/v1/agents/").json()
    assert [a["slug"] for a in body["results"]] == ["demo-assistant"]
    assert body["results"][0]["tools"] == ["calculator", "current_time"]


def test_unknown_api_paths_are_json_404s(alice_api: APIClient) -> None:
    assert_error(alice_api.get("/api/v1/nothing-here/"), 404, "not_found")


def test_the_openapi_schema_is_served(alice_api: APIClient) -> None:
    response = alice_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200


def test_an_api_call_reads_only_the_presented_token(
    alice: Any, django_assert_num_queries: Any
) -> None:
    """knox would load every token of the user on each call; ours looks at one row."""
    from agents.auth import BearerTokenAuthentication
    from agents.token_services import api_token_create

    tokens = [api_token_create(user=alice) for _ in range(5)]
    # The first use records it (ApiToken.last_used_at, at most once a minute); after that
    # a call is one query.
    BearerTokenAuthentication().authenticate_credentials(tokens[2].encode())
    with django_assert_num_queries(1):
        user, _ = BearerTokenAuthentication().authenticate_credentials(tokens[2].encode())
    assert user == alice


def test_expired_tokens_are_refused_and_purged(alice: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone
    from knox.models import AuthToken

    from agents.token_services import api_token_create, tokens_purge_expired

    expired, kept = api_token_create(user=alice), api_token_create(user=alice)
    other_expired = api_token_create(user=alice)
    AuthToken.objects.filter(token_key__in=[expired[:15], other_expired[:15]]).update(
        expiry=timezone.now() - timedelta(minutes=1)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {expired}")
    assert_error(client.get("/api/v1/runs/"), 401, "authentication_failed")
    assert AuthToken.objects.filter(user=alice).count() == 2  # the presented one is gone
    assert tokens_purge_expired() == 1  # the periodic sweep takes the other
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {kept}")
    assert client.get("/api/v1/runs/").status_code == 200
