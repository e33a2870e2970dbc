"""The OpenAPI side of the shared plumbing: the error shape as a schema component, the
error statuses every operation can answer with, and the Idempotency-Key header."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request is not valid; `error.details` names the fields or parameters.",
    401: "No valid bearer token or session.",
    402: "A spending budget is used up.",
    403: "Authenticated, but without the permission this needs.",
    404: "No such resource (or not one the caller may see).",
    405: "The method is not allowed here.",
    406: "None of the accepted media types can be produced.",
    409: "The request clashes with the current state.",
    413: "The request body is too large.",
    415: "The body is not JSON.",
    422: "Refused as a whole (an Idempotency-Key reused with another body).",
    429: "Too many requests; retry after `Retry-After` seconds.",
    503: "Temporarily unavailable; retry after `Retry-After` seconds.",
}

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable, machine-readable."),
                "message": serializers.CharField(help_text="For people."),
                "details": serializers.JSONField(allow_null=True, required=False),
            },
        )
    },
)

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Retry-safe creation: the same key (per user, at most 255 characters) with the same "
        "body returns the first result with 200; with another body it is a 422 "
        "`idempotency_key_reused`."
    ),
)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """``responses=`` entries for the given error statuses, each with the error shape."""
    return {
        s: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[s]) for s in statuses
    }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"nullable": True},
            },
        }
    },
}


def _error_ref() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Error"}


# Query parameters an empty value is allowed for: DRF reads `?cursor=` as the first page.
EMPTY_ALLOWED = frozenset({"cursor"})


def _no_empty_query_values(params: list[dict[str, Any]]) -> None:
    """Every list filter and query field refuses an empty value with a 400 naming it
    (agents.filters.StrictFilterSet, serializers' allow_blank=False): say so."""
    for param in params:
        schema = param.get("schema", {})
        if param.get("in") == "query" and param["name"] not in EMPTY_ALLOWED:
            if schema.get("type") == "string" and "enum" not in schema:
                schema.setdefault("minLength", 1)


def add_common_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOK: every operation documents the errors any request can meet
    (401 and 403 when authenticated, 429, 404 with path parameters, 400/413/415 with a
    body or query parameters, 406), in the one error shape."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            params = operation.get("parameters", [])
            _no_empty_query_values(params)
            statuses = {406, 429}
            if operation.get("security") != [{}] and operation.get("security", None) != []:
                statuses |= {401, 403}
            if any(p.get("in") == "path" for p in params):
                statuses.add(404)
            if any(p.get("in") == "query" for p in params):
                statuses.add(400)
            if "requestBody" in operation:
                statuses |= {400, 413, 415}
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(
                    str(status),
                    {
                        "description": ERROR_DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": _error_ref()}},
                    },
                )
    return result
