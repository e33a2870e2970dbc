"""Inputs a fuzzer found that answered 500 (issue 11, finding 4), each refused where it
enters: the parser, the query parameters, the URL, the service. And the schema says so."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from agents.models import Provider, ProviderKind
from secrets_vault.services import secret_create

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/agents/demo-assistant/runs/"
HUGE = "99999999999999999999"


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


def test_a_body_nested_50000_levels_deep_is_a_400(alice_api: APIClient, demo_agent: Any) -> None:
    body = '{"input": "x", "limits": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = alice_api.post(RUNS, body, content_type="application/json")
    assert error_code(response, 400) == "malformed_request"
    assert "nested" in response.json()["error"]["message"]


def test_a_body_nested_just_too_deep_for_the_api_is_a_400_too(
    alice_api: APIClient, demo_agent: Any
) -> None:
    body = '{"input": "x", "limits": ' + "[" * 40 + "]" * 40 + "}"
    response = alice_api.post(RUNS, body, content_type="application/json")
    assert error_code(response, 400) == "malformed_request"


def test_huge_numbers_in_query_parameters_are_a_page_or_a_400_naming_them(
    alice_api: APIClient, bob_api: APIClient, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)
    run_id = alice_api.post(RUNS, {"input": "x"}, format="json").json()["id"]
    assert alice_api.get("/api/v1/runs/", {"limit": HUGE}).status_code == 200
    offset = bob_api.get("/api/v1/secrets/", {"offset": HUGE})
    assert error_code(offset, 400) == "invalid_request"
    assert "offset" in offset.json()["error"]["details"]
    assert error_code(bob_api.get("/api/v1/secrets/", {"limit": "-1"}), 400) == "invalid_request"
    assert bob_api.get("/api/v1/secrets/", {"limit": HUGE}).status_code == 200
    after = alice_api.get(f"/api/v1/runs/{run_id}/events/", {"after": HUGE})
    assert "after" in after.json()["error"]["details"]
    assert bob_api.get("/api/v1/moderation/flags/", {"offset": HUGE}).status_code == 400
    assert bob_api.get("/api/v1/moderation/flags/", {"rule": HUGE}).status_code == 400
    check = bob_api.post(
        "/api/v1/moderation/check/",
        {"text": "x", "stage": "input", "policy": 10**20},
        format="json",
    )
    assert error_code(check, 400) == "invalid_request"


def test_huge_ids_in_the_path_are_a_404(bob_api: APIClient) -> None:
    secret_create(name="k", value="sk-0123456789abcdef", actor=None)
    flag = bob_api.post(f"/api/v1/moderation/flags/{HUGE}/resolve/", {}, format="json")
    assert flag.status_code == 404
    assert bob_api.get(f"/api/v1/secrets/k/versions/{HUGE}/").status_code == 404


def test_deleting_a_secret_a_provider_uses_is_a_409_naming_the_provider(
    bob_api: APIClient,
) -> None:
    # given a provider whose API key is the secret
    secret = secret_create(name="openai-key", value="sk-0123456789abcdef", actor=None)
    Provider.objects.create(name="openai", kind=ProviderKind.OPENAI, api_key=secret)
    # when it is deleted
    response = bob_api.delete("/api/v1/secrets/openai-key/")
    # then it is refused, naming who uses it, and the secret stays
    assert error_code(response, 409) == "secret_in_use"
    assert "openai" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["used_by"] == ["openai (openai)"]
    assert bob_api.get("/api/v1/secrets/openai-key/").status_code == 200


def test_the_schema_matches_what_the_server_does() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths, components = schema["paths"], schema["components"]["schemas"]
    listed = paths["/api/v1/secrets/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["$ref"].endswith("/PaginatedSecretList")
    assert components["Secret"]["properties"]["rotation_due_at"]["nullable"] is True
    assert components["RunCreateRequest"]["additionalProperties"] is False
    assert components["RunLimitsRequest"]["additionalProperties"] is False
    events = {
        p["name"]: p["schema"] for p in paths["/api/v1/runs/{run_id}/events/"]["get"]["parameters"]
    }
    assert events["after"]["minimum"] == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/v1/agents/",
            {
                "slug": "nul",
                "name": "N",
                "provider": "demo",
                "model_name": "demo",
                "model_settings": {"k\x00": 1},
            },
        ),
        (
            "/api/v1/agents/",
            {
                "slug": "nul",
                "name": "N",
                "provider": "demo",
                "model_name": "demo",
                "tool_config": {"calculator": ["\x00"]},
            },
        ),
        (
            "/api/v1/moderation/policies/",
            {
                "name": "nul",
                "rules": [{"name": "r", "kind": "keyword", "params": {"terms": ["a\x00"]}}],
            },
        ),
    ],
)
def test_a_nul_character_in_a_json_field_is_a_400_not_a_database_error(
    bob_api: APIClient, demo_agent: Any, path: str, body: dict[str, Any]
) -> None:
    # PostgreSQL's jsonb cannot store U+0000; saving it raised DataError (a 500).
    response = bob_api.post(path, body, format="json")
    assert error_code(response, 400) == "invalid_request"
    assert "Null characters" in response.content.decode()
