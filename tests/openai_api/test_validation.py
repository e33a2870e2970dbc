"""Validation and error mapping of /v1/: every refusal in OpenAI's shape, naming the param."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from agents.models import Agent, ModelCall, Run
from agents.token_services import api_token_create
from core.errors import ConflictError, QuotaExhaustedError, RateLimitedError, UnavailableError
from openai_api.errors import from_application_error, run_failure
from openai_api.params import split_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_v1(alice: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=alice)}")


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "demo-assistant", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_it_refuses_a_missing_or_bad_token_with_401(demo_agent: Agent) -> None:
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer sy_nope"},
        {"HTTP_AUTHORIZATION": "Basic x"},
    ):
        response = Client(**headers).get("/v1/models")
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"


def test_it_lists_active_agents_as_models(alice_v1: Client, demo_agent: Agent) -> None:
    Agent.objects.create(
        slug="retired", name="R", provider=demo_agent.provider, model_name="demo", is_active=False
    )
    listed = alice_v1.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["demo-assistant"]
    assert listed["data"][0]["object"] == "model"
    assert alice_v1.get("/v1/models/demo-assistant").json()["id"] == "demo-assistant"
    missing = alice_v1.get("/v1/models/retired")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "model_not_found"


def test_an_unknown_model_is_a_404_naming_model(alice_v1: Client, demo_agent: Agent) -> None:
    response = post(alice_v1, "/v1/chat/completions", chat(model="nope"))
    assert response.status_code == 404
    assert error_of(response)["param"] == "model"
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"user": 7}, "user"),
        ({"stream": "yes"}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": None}, "model"),
    ],
)
def test_it_rejects_what_it_cannot_honour_naming_the_param(
    alice_v1: Client, demo_agent: Agent, fields: dict[str, Any], param: str
) -> None:
    response = post(alice_v1, "/v1/chat/completions", chat(**fields))
    assert response.status_code == 400, response.content
    assert error_of(response)["param"] == param
    assert error_of(response)["type"] == "invalid_request_error"
    assert not Run.objects.exists()


def test_max_tokens_above_the_agents_cap_is_refused(alice_v1: Client, demo_agent: Agent) -> None:
    demo_agent.max_output_tokens = 100
    demo_agent.save()
    response = post(alice_v1, "/v1/chat/completions", chat(max_tokens=101))
    assert response.status_code == 400
    assert error_of(response)["param"] == "max_tokens"
    assert "100" in error_of(response)["message"]


def test_malformed_json_and_wrong_methods_get_openai_errors(alice_v1: Client) -> None:
    bad = alice_v1.post("/v1/chat/completions", "{", content_type="application/json")
    assert bad.status_code == 400
    assert error_of(bad)["code"] == "invalid_json"
    assert (
        alice_v1.post("/v1/chat/completions", "[1]", content_type="application/json").status_code
        == 400
    )
    assert alice_v1.get("/v1/chat/completions").status_code == 405
    unknown = alice_v1.get("/v1/embeddings")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "unknown_url"


def test_an_exhausted_budget_is_a_429_insufficient_quota(
    alice_v1: Client, demo_agent: Agent, alice: Any
) -> None:
    demo_agent.monthly_budget_usd = Decimal("1.00")
    demo_agent.save()
    run = Run.objects.create(agent=demo_agent, owner=alice, input="x")
    ModelCall.objects.create(
        run=run, agent=demo_agent, model="demo", cost_usd=Decimal("1.5"), price_source="free"
    )
    response = post(alice_v1, "/v1/chat/completions", chat())
    assert response.status_code == 429
    assert error_of(response)["code"] == "insufficient_quota"
    assert error_of(response)["type"] == "insufficient_quota"
    assert response["x-should-retry"] == "false"


def test_throttling_is_a_429_with_retry_after(
    alice_v1: Client, demo_agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache

    from core.throttles import TokenRateThrottle

    cache.clear()
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "2/min"})
    statuses = [alice_v1.get("/v1/models").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = alice_v1.get("/v1/models")
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    assert int(limited["Retry-After"]) >= 1
    cache.clear()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].type"),
        ({"stream": True, "background": True}, "background"),
        ({"store": False}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"max_output_tokens": -1}, "max_output_tokens"),
        ({"instructions": 5}, "instructions"),
    ],
)
def test_responses_reject_what_they_cannot_honour(
    alice_v1: Client, demo_agent: Agent, fields: dict[str, Any], param: str
) -> None:
    response = post(alice_v1, "/v1/responses", {"model": "demo-assistant", "input": "hi", **fields})
    assert response.status_code == 400, response.content
    assert error_of(response)["param"] == param


def test_a_response_of_someone_else_is_not_found(
    alice_v1: Client, charlie: Any, demo_agent: Agent
) -> None:
    run = Run.objects.create(
        agent=demo_agent, owner=charlie, input="x", config={"client": {"api": "responses"}}
    )
    assert alice_v1.get(f"/v1/responses/resp_{run.id}").status_code == 404
    assert alice_v1.get("/v1/responses/resp_not-a-uuid").status_code == 404
    mine = Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=charlie)}")
    shown = mine.get(f"/v1/responses/resp_{run.id}").json()
    assert shown["id"] == f"resp_{run.id}"
    assert shown["status"] == "queued"


def test_system_messages_become_added_instructions_and_turns_history() -> None:
    text, history, instructions = split_conversation(
        [
            ("system", "Be brief."),
            ("user", "a"),
            ("user", "b"),
            ("assistant", "c"),
            ("developer", "Use French."),
            ("user", "d"),
        ],
        "messages",
    )
    assert text == "d"
    assert history == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
    ]
    assert instructions == "Be brief.\n\nUse French."


def test_application_errors_map_to_the_statuses_the_sdk_knows() -> None:
    assert from_application_error(QuotaExhaustedError("b", "m")).status == 429
    limited = from_application_error(RateLimitedError("r", "m", retry_after=7))
    assert (limited.status, limited.retry_after, limited.code) == (429, 7, "rate_limit_exceeded")
    assert from_application_error(UnavailableError("u", "m")).status == 503
    assert from_application_error(ConflictError("c", "m")).status == 409
    assert run_failure("provider_unavailable", "down").status == 502
    assert run_failure("provider_unavailable", "down").retry is False
    assert run_failure("timed_out", "slow").status == 504
    assert run_failure("internal_error", "").status == 500
    assert run_failure("budget_exhausted", "spent").code == "insufficient_quota"


def test_creating_runs_is_held_to_the_tokens_run_creation_rate(
    alice_v1: Client, demo_agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache

    from core.throttles import RunCreateRateThrottle

    cache.clear()
    monkeypatch.setattr(
        RunCreateRateThrottle, "THROTTLE_RATES", {"token": "100/min", "run_create": "1/min"}
    )
    background = {"model": "demo-assistant", "input": "hi", "background": True}
    assert post(alice_v1, "/v1/responses", background).status_code == 200
    limited = post(alice_v1, "/v1/chat/completions", chat())
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    assert int(limited["Retry-After"]) >= 1
    assert alice_v1.get("/v1/models").status_code == 200  # not a creation
    cache.clear()


def test_beyond_the_run_quota_a_create_is_a_429_too_many_runs(
    alice: Any, alice_v1: Client, demo_agent: Agent, settings: Any
) -> None:
    settings.RUNS_MAX_ACTIVE_PER_OWNER = 1
    Run.objects.create(agent=demo_agent, owner=alice, input="x")  # queued
    response = post(alice_v1, "/v1/chat/completions", chat())
    assert response.status_code == 429
    assert error_of(response)["code"] == "too_many_runs"
    assert int(response["Retry-After"]) >= 1
