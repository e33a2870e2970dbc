"""Idempotency-Key: the same key and body replay the run; another body is a 422."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Run

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/agents/demo-assistant/runs/"


@pytest.fixture(autouse=True)
def _no_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)


def post(client: APIClient, body: Any, key: str = "k1") -> Any:
    return client.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_the_same_key_and_body_in_another_key_order_replays_the_run(
    alice_api: APIClient, demo_agent: Any
) -> None:
    first = post(alice_api, {"input": "once", "limits": {"max_requests": 2}})
    raw = '{"limits": {"max_requests": 2},   "input": "once"}'
    again = alice_api.post(RUNS, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize(
    "other_body",
    [{"input": "twice"}, {"input": "once", "limits": {"max_requests": 1}}],
)
def test_the_same_key_with_another_body_is_a_422_idempotency_key_reused(
    alice_api: APIClient, demo_agent: Any, other_body: dict[str, Any]
) -> None:
    first = post(alice_api, {"input": "once"})
    response = post(alice_api, other_body)
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["details"] == {"run": first.json()["id"]}
    assert Run.objects.count() == 1


def test_a_run_stored_without_a_fingerprint_is_replayed_as_before(
    alice_api: APIClient, demo_agent: Any
) -> None:
    first = post(alice_api, {"input": "once"}).json()
    Run.objects.update(idempotency_fingerprint="")
    assert post(alice_api, {"input": "something else"}).json()["id"] == first["id"]


def test_money_in_a_run_is_a_fixed_place_decimal_string(
    alice_api: APIClient, demo_agent: Any
) -> None:
    run = post(alice_api, {"input": "x"}).json()
    assert run["usage"]["cost_usd"] == "0.000000"
