"""Logs: JSON lines that carry context but never frame locals (where secrets live)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

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


def capture_json() -> io.StringIO:
    configure_logging(level="INFO", fmt="json")
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    return stream


def test_each_request_logs_one_line_with_its_id_and_the_path_without_the_query(
    client: object,
) -> None:
    stream = capture_json()
    client.get("/livez?token=sk-canary-query", HTTP_X_REQUEST_ID="req-42")  # type: ignore[attr-defined]
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [r for r in records if r.get("request_id") == "req-42"]
    assert [r["event"] for r in mine] == ["request_finished"]
    assert mine[0]["request"] == "GET /livez" and mine[0]["code"] == 200
    assert "sk-canary-query" not in stream.getvalue()


def test_the_log_names_a_user_only_once_authentication_loaded_it(
    client: object, django_user_model: Any
) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    client.force_login(alice)  # type: ignore[attr-defined]
    stream = capture_json()
    client.get("/livez")  # type: ignore[attr-defined]  # no view reads request.user
    client.get("/admin/")  # type: ignore[attr-defined]  # the admin does
    finished = [json.loads(line) for line in stream.getvalue().splitlines()]
    users = {r["request"]: r.get("user_id") for r in finished if r["event"] == "request_finished"}
    assert users == {"GET /livez": None, "GET /admin/": alice.pk}


def test_a_task_carries_the_request_id_and_its_parent_task_but_not_the_run() -> None:
    from django_structlog.celery.receivers import CeleryReceiver

    # Given the context of a request, then of a run started from a task
    headers: dict[str, Any] = {}
    with structlog.contextvars.bound_contextvars(request_id="req-1", ip="10.0.0.1", user_id=7):
        # When either publishes a task
        CeleryReceiver().receiver_before_task_publish(headers=headers, properties={})
    from_run: dict[str, Any] = {}
    with structlog.contextvars.bound_contextvars(
        request_id="req-1", task_id="t-1", run_id="r-1", agent="demo"
    ):
        CeleryReceiver().receiver_before_task_publish(headers=from_run, properties={})
    # Then the request's task carries its id and user, and the run's names the run
    assert headers["__django_structlog__"] == {"request_id": "req-1", "user_id": 7}
    assert from_run["__django_structlog__"] == {
        "parent_task_id": "t-1",
        "started_by_run_id": "r-1",
    }


def test_console_tracebacks_never_include_local_variables_either() -> None:
    configure_logging(level="INFO", fmt="console")
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    api_key = "sk-canary-console-local-5678"  # noqa: F841 - what must not leak
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("test").exception("it_failed")
    text = stream.getvalue()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert "sk-canary-console-local-5678" not in text
