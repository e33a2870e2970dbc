"""Threads over REST: who lists, reads, reads the conversation of and deletes which thread."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from rest_framework.test import APIClient

from agents.models import Run, Thread
from agents.thread_services import thread_create, thread_history
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

THREADS = "/api/v1/threads/"


def stored(*messages: Any) -> list[Any]:
    return ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")


def add_run(thread: Thread, *, status: str, messages: list[Any], minutes_ago: int) -> Run:
    run = Run.objects.create(
        agent=thread.agent,
        owner=thread.owner,
        thread=thread,
        input="x",
        status=status,
        messages=messages,
    )
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return run


@pytest.fixture
def alices_thread(alice: Any, demo_agent: Any) -> Thread:
    thread = thread_create(agent=demo_agent, owner=alice, title="maths")
    add_run(
        thread,
        status="succeeded",
        minutes_ago=3,
        messages=stored(
            ModelRequest(parts=[UserPromptPart(content="What is 2+2?")]),
            ModelResponse(parts=[ToolCallPart(tool_name="calculator", args={"e": "2+2"})]),
            ModelRequest(parts=[ToolReturnPart(tool_name="calculator", content="4")]),
            ModelResponse(parts=[TextPart(content="4")]),
        ),
    )
    add_run(
        thread,
        status="failed",
        minutes_ago=2,
        messages=stored(ModelRequest(parts=[UserPromptPart(content="lost")])),
    )
    return thread


def test_the_list_shows_own_threads_and_everyones_with_view_thread(
    alices_thread: Thread, charlie: Any, bob: Any, dave: Any, demo_agent: Any
) -> None:
    thread_create(agent=demo_agent, owner=charlie, title="charlie's")
    titles = {
        name: [t["title"] for t in token_client(user).get(THREADS).json()["results"]]
        for name, user in {
            "alice": alices_thread.owner,
            "charlie": charlie,
            "bob": bob,
            "dave": dave,
        }.items()
    }
    assert titles == {
        "alice": ["maths"],
        "charlie": ["charlie's"],
        "bob": ["charlie's", "maths"],
        "dave": ["charlie's", "maths"],
    }
    only_alice = token_client(dave).get(THREADS, {"owner": "alice"}).json()["results"]
    assert [t["owner"] for t in only_alice] == ["alice"]
    assert token_client(charlie).get(THREADS, {"owner": "alice"}).json()["results"] == []


def test_an_unknown_agent_filter_is_a_400_naming_it(alice_api: APIClient) -> None:
    response = alice_api.get(THREADS, {"agent": "nope"})
    assert response.status_code == 400
    assert "agent" in response.json()["error"]["details"]


def test_a_thread_reads_with_its_runs_oldest_first(
    alices_thread: Thread, alice_api: APIClient
) -> None:
    body = alice_api.get(f"{THREADS}{alices_thread.pk}/").json()
    assert body["owner"] == "alice"
    assert [r["status"] for r in body["runs"]] == ["succeeded", "failed"]


@pytest.mark.parametrize(
    ("persona", "visible"), [("bob", True), ("dave", True), ("charlie", False)]
)
def test_others_read_a_thread_only_with_view_thread(
    alices_thread: Thread, persona: str, visible: bool, request: pytest.FixtureRequest
) -> None:
    client = token_client(request.getfixturevalue(persona))
    for suffix in ("", "messages/"):
        response = client.get(f"{THREADS}{alices_thread.pk}/{suffix}")
        assert response.status_code == (200 if visible else 404)


def test_the_messages_are_what_the_next_run_loads_with_their_run(
    alices_thread: Thread, alice_api: APIClient
) -> None:
    body = alice_api.get(f"{THREADS}{alices_thread.pk}/messages/").json()
    succeeded = Run.objects.get(status="succeeded")
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "What is 2+2?"),
        ("assistant", ""),
        ("tool", "4"),
        ("assistant", "4"),
    ]
    assert {m["run"] for m in body["messages"]} == {str(succeeded.pk)}
    assert body["messages"][1]["tool_call"] == {"name": "calculator", "arguments": '{"e": "2+2"}'}
    next_run = Run.objects.create(
        agent=alices_thread.agent, owner=alices_thread.owner, thread=alices_thread, input="y"
    )
    assert len(thread_history(next_run)) == 4  # the failed run's message is not loaded


def test_the_messages_keep_the_newest_runs_that_fit_the_budget(
    alices_thread: Thread, alice_api: APIClient, settings: Any
) -> None:
    newer = add_run(
        alices_thread,
        status="succeeded",
        minutes_ago=1,
        messages=stored(ModelRequest(parts=[UserPromptPart(content="and 3+3?")])),
    )
    settings.THREAD_HISTORY_MAX_CHARS = len(json.dumps(newer.messages)) + 10
    messages = alice_api.get(f"{THREADS}{alices_thread.pk}/messages/").json()["messages"]
    assert [(m["content"], m["run"]) for m in messages] == [("and 3+3?", str(newer.pk))]


def test_deleting_a_thread_keeps_its_runs(alices_thread: Thread, alice_api: APIClient) -> None:
    assert alice_api.delete(f"{THREADS}{alices_thread.pk}/").status_code == 204
    assert not Thread.objects.exists()
    assert Run.objects.filter(thread=None).count() == 2
    assert alice_api.get(f"{THREADS}{alices_thread.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("persona", "allowed"), [("bob", True), ("dave", True), ("charlie", False)]
)
def test_others_delete_a_thread_only_with_delete_thread(
    alices_thread: Thread, persona: str, allowed: bool, request: pytest.FixtureRequest
) -> None:
    response = token_client(request.getfixturevalue(persona)).delete(
        f"{THREADS}{alices_thread.pk}/"
    )
    assert response.status_code == (204 if allowed else 404)
    assert Thread.objects.exists() is not allowed


def test_threads_need_authentication(alices_thread: Thread) -> None:
    assert APIClient().get(THREADS).status_code == 401
    assert APIClient().get(f"{THREADS}{alices_thread.pk}/messages/").status_code == 401


def test_a_thread_id_that_is_not_a_uuid_is_a_404(alice_api: APIClient) -> None:
    assert alice_api.get(f"{THREADS}not-a-uuid/").json()["error"]["code"] == "not_found"
