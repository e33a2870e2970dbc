"""Logs: JSON lines that carry context but never frame locals (where secrets live)."""

from __future__ import annotations

import io
import json
import logging

import structlog

from monitoring.logging import configure_logging


def test_json_tracebacks_never_include_local_variables() -> None:
    configure_logging(level="INFO", fmt="json")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    api_key = "sk-canary-local-variable-1234"  # noqa: F841 - what must not leak
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("test").exception("it_failed", run_id="r1")
    line = stream.getvalue().strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "it_failed" and record["run_id"] == "r1"
    assert record["exception"][0]["exc_type"] == "RuntimeError"
    assert "sk-canary-local-variable-1234" not in line
    assert "locals" not in json.dumps(record["exception"])


def test_request_ids_are_echoed_and_sanitised(client: object) -> None:
    response = client.get("/livez", HTTP_X_REQUEST_ID="abc-123")  # type: ignore[attr-defined]
    assert response["X-Request-ID"] == "abc-123"
    bad = client.get("/livez", HTTP_X_REQUEST_ID="<script>")  # type: ignore[attr-defined]
    assert bad["X-Request-ID"] != "<script>" and len(bad["X-Request-ID"]) == 32
