"""The generated OpenAPI schema describes every operation: what it does, its parameters,
and the errors it can answer with."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_operation_has_a_summary_a_description_and_its_errors(
    schema: dict[str, Any],
) -> None:
    found = operations(schema)
    assert len(found) >= 50
    missing = [
        f"{method} {path}: {what}"
        for method, path, operation in found
        for what, ok in [
            ("summary", bool(operation.get("summary"))),
            ("description", bool(operation.get("description"))),
            ("a 4xx response", any(code.startswith("4") for code in operation["responses"])),
        ]
        if not ok
    ]
    assert missing == []


def test_every_error_response_has_the_error_shape(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_run_creation_documents_the_idempotency_key_and_its_errors(
    schema: dict[str, Any],
) -> None:
    create = schema["paths"]["/api/v1/agents/{slug}/runs/"]["post"]
    headers = {p["name"] for p in create["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in headers
    assert {"200", "201", "400", "402", "404", "409", "422", "429"} <= set(create["responses"])


def test_the_runs_list_documents_its_filters(schema: dict[str, Any]) -> None:
    listed = schema["paths"]["/api/v1/runs/"]["get"]
    query = {p["name"] for p in listed["parameters"] if p["in"] == "query"}
    assert {"status", "agent", "thread", "created_after", "created_before", "limit"} <= query


def test_the_run_stream_is_an_event_stream(schema: dict[str, Any]) -> None:
    stream = schema["paths"]["/api/v1/runs/{run_id}/stream/"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]


def test_the_moderation_check_takes_exactly_one_of_policy_and_rules(
    schema: dict[str, Any],
) -> None:
    check = schema["components"]["schemas"]["CheckRequest"]
    assert check["oneOf"] == [{"required": ["policy"]}, {"required": ["rules"]}]
