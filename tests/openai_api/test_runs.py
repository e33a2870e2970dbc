"""/v1/ in process: requests become runs executed on this test's loop, read back as
OpenAI objects and streams (the e2e tests do the same against daphne and Celery)."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from agents.models import Agent, Run
from agents.runtime import execute_run
from agents.token_services import api_token_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _runs_execute_here(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The executor, as the in-process one does it: a task on the serving loop."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []

    def enqueue(run_id: Any) -> None:
        # Fresh contexts: the caller's (a sync_to_async thread's) would carry asgiref's
        # markers into the run, as agents.runtime.executors explains.
        def spawn() -> None:
            tasks.append(loop.create_task(execute_run(run_id), context=contextvars.Context()))

        loop.call_soon_threadsafe(spawn, context=contextvars.Context())

    monkeypatch.setattr("agents.runtime.executors.enqueue_run", enqueue)
    yield
    for task in tasks:
        task.cancel()  # a run a failed test left behind must not hold up the teardown
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    from django.db import connections

    await sync_to_async(connections.close_all)()


class V1:
    """An AsyncClient sending a bearer token (AsyncClient(headers=...) puts them in the
    ASGI scope under WSGI names, where no view sees them)."""

    def __init__(self, token: str) -> None:
        self.client = AsyncClient()
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> Any:
        return await self.client.get(path, headers=self.headers)

    async def post(self, path: str, body: str = "") -> Any:
        return await self.client.post(
            path, body, content_type="application/json", headers=self.headers
        )


@pytest.fixture
def v1(alice: Any, demo_agent: Agent) -> Iterator[V1]:
    yield V1(api_token_create(user=alice))


async def post(client: V1, path: str, body: dict[str, Any]) -> Any:
    return await client.post(path, json.dumps(body))


async def sse_events(response: Any) -> list[tuple[str | None, str]]:
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = []
    for block in raw.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event"), lines["data"]))
    return events


async def test_a_completion_waits_for_the_run_and_reports_its_usage(v1: V1) -> None:
    response = await post(
        v1,
        "/v1/chat/completions",
        {"model": "demo-assistant", "messages": [{"role": "user", "content": "What is 2+3?"}]},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    run = await Run.objects.aget(pk=body["id"].removeprefix("chatcmpl-"))
    assert run.status == "succeeded"
    assert body["choices"][0]["message"]["content"] == run.output
    assert "5" in run.output
    assert body["usage"]["completion_tokens"] == run.output_tokens > 0
    assert run.config["client"] == {"api": "chat.completions"}


async def test_history_and_instructions_go_into_the_run(v1: V1) -> None:
    response = await post(
        v1,
        "/v1/chat/completions",
        {
            "model": "demo-assistant",
            "messages": [
                {"role": "system", "content": "Added rule."},
                {"role": "user", "content": "earlier"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": "now"},
            ],
            "temperature": 0.5,
            "user": "u-1",
        },
    )
    run = await Run.objects.aget(pk=response.json()["id"].removeprefix("chatcmpl-"))
    assert run.input == "now"
    assert run.config["history"] == [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "reply"},
    ]
    assert run.config["instructions"].endswith("Added rule.")
    assert run.config["model_settings"]["temperature"] == 0.5
    assert run.config["client"]["user"] == "u-1"
    assert run.output.startswith("You said 1 words: now")  # the demo answers the last turn


async def test_a_streamed_completion_ends_with_usage_and_done(v1: V1) -> None:
    response = await post(
        v1,
        "/v1/chat/completions",
        {
            "model": "demo-assistant",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    events = await sse_events(response)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    run = await Run.objects.aget(pk=chunks[0]["id"].removeprefix("chatcmpl-"))
    assert text == run.output
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == run.output_tokens


async def test_a_streamed_response_and_its_continuation(v1: V1) -> None:
    response = await post(
        v1, "/v1/responses", {"model": "demo-assistant", "input": "first", "stream": True}
    )
    events = await sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    completed = json.loads(events[-1][1])["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] > 0
    again = await post(
        v1,
        "/v1/responses",
        {"model": "demo-assistant", "input": "second", "previous_response_id": completed["id"]},
    )
    second = again.json()
    assert second["previous_response_id"] == completed["id"]
    first_run = await Run.objects.aget(pk=completed["id"].removeprefix("resp_"))
    second_run = await Run.objects.aget(pk=second["id"].removeprefix("resp_"))
    assert first_run.thread_id == second_run.thread_id is not None
    fetched = await v1.get(f"/v1/responses/{second['id']}")
    assert fetched.json()["output"][0]["content"][0]["text"] == second_run.output
