"""One log trail: the X-Request-ID a client sends reaches every log line of its run, in
daphne's log and (distributed) in the Celery worker's, with the task id beside it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_run_stream_e2e import wait_for_status

pytestmark = pytest.mark.e2e


def json_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def grep(stack: Stack, name: str, needle: str) -> list[dict[str, Any]]:
    """The JSON lines of one process's log that mention ``needle`` (any field)."""
    log = next(p for p in stack.logs if p.name == f"{name}.log")
    return [r for r in json_lines(log) if needle in json.dumps(r)]


def wait_for_line(stack: Stack, name: str, needle: str, event: str) -> list[dict[str, Any]]:
    # The run's status is visible over the API a moment before its last line is written.
    deadline = time.monotonic() + 10
    while True:
        lines = grep(stack, name, needle)
        if any(r["event"] == event for r in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_grep_for_the_request_id_shows_the_run_from_post_to_finish(stack: Stack) -> None:
    # Given a client that names its request
    request_id = f"trail-{uuid.uuid4().hex[:12]}"
    # When it starts a run and the run finishes
    with stack.client() as client:
        response = client.post(
            "/api/v1/agents/demo-assistant/runs/",
            json={"input": "What is 6*7?"},
            headers={"X-Request-ID": request_id},
        )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    run_id = response.json()["id"]
    assert wait_for_status(stack, run_id)["status"] == "succeeded"

    # Then the web log has the request, with its user and status
    web = grep(stack, "daphne", request_id)
    finished = [r for r in web if r["event"] == "request_finished"]
    assert len(finished) == 1, web
    assert finished[0]["code"] == 201
    assert finished[0]["request"] == "POST /api/v1/agents/demo-assistant/runs/"
    assert finished[0]["user_id"] is not None

    # And every line about the run, wherever it ran, carries the request id
    where = "celery" if stack.env.get("REDIS_URL") else "daphne"
    trail = wait_for_line(stack, where, run_id, "run_finished")
    run_lines = [r for r in trail if r.get("run_id") == run_id]
    assert any(r["event"] == "run_finished" for r in run_lines), trail
    assert all(r.get("request_id") == request_id for r in run_lines), run_lines
    if where == "celery":
        # with the Celery task id, which the task's own start line names too
        started = [r for r in grep(stack, "celery", request_id) if r["event"] == "task_started"]
        assert len(started) == 1, started
        task_id = started[0]["task_id"]
        assert {r.get("task_id") for r in run_lines} == {task_id}
        assert any(r["event"] == "task_enqueued" for r in web), web


def test_an_unsafe_request_id_is_replaced_not_logged(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/api/v1/runs/", headers={"X-Request-ID": "bad id {}"})
    replaced = response.headers["X-Request-ID"]
    assert replaced != "bad id {}" and len(replaced) == 32
    deadline = time.monotonic() + 5
    while not grep(stack, "daphne", replaced) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r["event"] for r in grep(stack, "daphne", replaced)] == ["request_finished"]
