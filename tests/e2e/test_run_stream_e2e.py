"""End to end: HTTP creates a run, a worker executes it, a WebSocket client watches.

Every test runs against both stacks: distributed (daphne + Celery worker + PostgreSQL +
Redis) and embedded (daphne alone, SQLite, in-process executor, in-memory layer).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.wsclient import read_stream

pytestmark = pytest.mark.e2e

LONG_INPUT = " ".join(f"word{i}" for i in range(60))


def start_run(stack: Stack, text: str, token: str | None = None) -> dict[str, Any]:
    with stack.client(token) as client:
        response = client.post("/api/v1/agents/demo-assistant/runs/", json={"input": text})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_status(stack: Stack, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while time.monotonic() < deadline:
            run = client.get(f"/api/v1/runs/{run_id}/").json()
            if run["status"] in {"succeeded", "failed", "cancelled", "timed_out", "blocked"}:
                return run
            time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def assert_complete(events: list[dict[str, Any]], run_id: str) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert all(e["run"] == run_id for e in events)
    assert events[0]["type"] == "run.queued"
    assert events[1]["type"] == "run.started"
    assert events[-1]["type"] == "run.succeeded"


def test_a_calculator_run_streams_every_event_once_and_answers_84(stack: Stack) -> None:
    # Given a run created over HTTP
    run = start_run(stack, "What is 12*7?")
    # When a WebSocket client follows it from the start
    result = asyncio.run(read_stream(f"{stack.ws_url}/ws/runs/{run['id']}/", token=stack.token))
    # Then it sees every event from seq 1 to the terminal one, in order, once
    assert_complete(result.events, run["id"])
    assert result.close_code == 1000
    types = [e["type"] for e in result.events]
    assert types.index("tool.call") < types.index("tool.result") < types.index("run.succeeded")
    call = next(e for e in result.events if e["type"] == "tool.call")
    assert call["data"]["name"] == "calculator"
    assert call["data"]["args"] == {"expression": "12*7"}
    tool_result = next(e for e in result.events if e["type"] == "tool.result")
    assert tool_result["data"]["ok"] is True and tool_result["data"]["output"] == "84"
    deltas = "".join(e["data"]["delta"] for e in result.events if e["type"] == "message.delta")
    completed = [e["data"]["content"] for e in result.events if e["type"] == "message.completed"]
    assert deltas == "".join(completed)
    assert "84" in result.events[-1]["data"]["output"]
    # And the REST view agrees
    final = wait_for_status(stack, run["id"])
    assert final["status"] == "succeeded"
    assert "84" in final["output"]
    assert final["usage"]["tool_calls"] == 1


def test_a_client_joining_mid_stream_gets_no_gap_and_no_duplicate(stack: Stack) -> None:
    run = start_run(stack, LONG_INPUT)
    time.sleep(0.5)  # the run is streaming by now (60 words at 20 ms each)
    result = asyncio.run(read_stream(f"{stack.ws_url}/ws/runs/{run['id']}/", token=stack.token))
    assert_complete(result.events, run["id"])
    deltas = "".join(e["data"]["delta"] for e in result.events if e["type"] == "message.delta")
    assert all(word in deltas for word in LONG_INPUT.split())


def test_a_client_that_reconnects_with_after_gets_the_rest_exactly_once(stack: Stack) -> None:
    run = start_run(stack, LONG_INPUT)
    url = f"{stack.ws_url}/ws/runs/{run['id']}/"
    first = asyncio.run(read_stream(url, token=stack.token, stop_after=4))
    last_seen = first.events[-1]["seq"]
    rest = asyncio.run(read_stream(f"{url}?after={last_seen}", token=stack.token))
    assert_complete(first.events + rest.events, run["id"])
    assert rest.events[0]["seq"] == last_seen + 1


def test_a_finished_run_replays_in_full(stack: Stack) -> None:
    run = start_run(stack, "hello replay")
    wait_for_status(stack, run["id"])
    result = asyncio.run(read_stream(f"{stack.ws_url}/ws/runs/{run['id']}/", token=stack.token))
    assert_complete(result.events, run["id"])
    with stack.client() as client:
        page = client.get(f"/api/v1/runs/{run['id']}/events/", params={"after": 2}).json()
    assert [e["seq"] for e in page["events"]] == [e["seq"] for e in result.events[2:]]
    assert page["events"] == result.events[2:]


def test_another_users_run_is_a_404_and_a_refused_websocket(stack: Stack) -> None:
    run = start_run(stack, "private")
    outsider = stack.user_token(f"charlie{uuid.uuid4().hex[:6]}")
    with stack.client(outsider) as client:
        assert client.get(f"/api/v1/runs/{run['id']}/").status_code == 404
        assert client.get(f"/api/v1/runs/{run['id']}/events/").status_code == 404
    url = f"{stack.ws_url}/ws/runs/{run['id']}/"
    refused = asyncio.run(read_stream(url, token=outsider))
    unknown = asyncio.run(read_stream(f"{stack.ws_url}/ws/runs/{uuid.uuid4()}/", token=outsider))
    assert refused.events == [] and refused.close_code == 4404
    assert unknown.close_code == 4404  # the same answer whether the run exists or not


def test_websockets_refuse_anonymous_clients_and_foreign_origins(stack: Stack) -> None:
    run = start_run(stack, "guarded")
    url = f"{stack.ws_url}/ws/runs/{run['id']}/"
    assert asyncio.run(read_stream(url)).close_code == 4401
    assert asyncio.run(read_stream(url, token="sy_" + "0" * 64)).close_code == 4401
    foreign = asyncio.run(read_stream(url, token=stack.token, origin="https://evil.example"))
    assert foreign.close_code == 4403 and foreign.events == []


def test_the_session_cookie_works_from_our_own_origin(stack: Stack) -> None:
    run = start_run(stack, "cookie")
    with httpx.Client(base_url=stack.base_url) as browser:
        login = browser.get("/admin/login/")
        csrf = login.cookies["csrftoken"]
        browser.post(
            "/admin/login/",
            data={
                "username": "admin",
                "password": stack.admin_password,
                "csrfmiddlewaretoken": csrf,
                "next": "/admin/",
            },
            headers={"Referer": stack.base_url + "/admin/login/"},
        )
        session = browser.cookies["sessionid"]
    url = f"{stack.ws_url}/ws/runs/{run['id']}/"
    ok = asyncio.run(read_stream(url, cookie=f"sessionid={session}", origin=stack.base_url))
    assert_complete(ok.events, run["id"])
    # Without an Origin a cookie alone is not enough.
    assert asyncio.run(read_stream(url, cookie=f"sessionid={session}")).close_code == 4401


def test_run_agent_streams_the_answer_and_exits_zero(stack: Stack) -> None:
    done = stack.manage("run_agent", "demo-assistant", "What is 6*7?")
    assert done.returncode == 0
    assert "The result is 42." in done.stdout
    assert "calculator" in done.stderr


def test_readyz_names_each_check(stack: Stack) -> None:
    body = httpx.get(stack.base_url + "/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    if "REDIS_URL" in stack.env:
        assert body["checks"]["redis"]["ok"] and body["checks"]["channel_layer"]["ok"]
    assert httpx.get(stack.base_url + "/livez").json() == {"status": "ok"}
