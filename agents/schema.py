"""OpenAPI: describe our bearer token authentication to drf-spectacular."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agents.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API token (sy_...)."}


RUN_STREAM_PATH = "/api/v1/runs/{run_id}/stream/"

SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "description": "The event's seq (Last-Event-ID on resume)."},
        "event": {"type": "string", "description": "The event type, e.g. run.started."},
        "data": {
            "type": "string",
            "description": "The event envelope as JSON: run, seq, type, at, data.",
        },
        "retry": {"type": "integer", "description": "Reconnect delay in milliseconds."},
    },
}


def add_run_stream(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOK: the SSE stream is a plain async Django view (no thread per
    client), which drf-spectacular does not see; describe it by hand."""
    result.setdefault("paths", {})[RUN_STREAM_PATH] = {
        "get": {
            "operationId": "runs_stream",
            "summary": "Stream a run's events (Server-Sent Events)",
            "description": (
                "The run's events as `text/event-stream`: `id:` is the seq, `event:` the "
                "type, `data:` the envelope (docs/streaming.md). Resumes after "
                "`Last-Event-ID` or `?after=`; 204 when a finished run has nothing left."
            ),
            "tags": ["runs"],
            "parameters": [
                {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "Send events with seq > after.",
                },
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    # A seq, as the stream's `id:` lines carry it; anything else is a 400.
                    "schema": {"type": "string", "pattern": "^[0-9]*$"},
                    "description": "What EventSource sends on reconnect; wins over after.",
                },
            ],
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    # One event of the stream (how schemathesis and OpenAPI 3.2's
                    # itemSchema read a text/event-stream schema).
                    "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                },
                "204": {"description": "The run finished and every event was sent."},
            },
        }
    }
    return result
