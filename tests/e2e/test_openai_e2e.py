"""End to end: the official ``openai`` SDK (and LangChain) against real daphne + Celery.

Agents are OpenAI models here: the SDK is pointed at ``<stack>/v1`` with a Switchyard API
token as its key. The demo model answers offline; the agents on the ``fake`` provider
talk to the fake OpenAI server this test process runs on 127.0.0.1 (the network edge),
which records what the platform sent it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Stack
from tests.fakes.provider_server import DEFAULT_TEXT, FakeProviderServer, Scenario

pytestmark = pytest.mark.e2e

DEMO = "demo-assistant"


@pytest.fixture(scope="module")
def stack(distributed_stack: Stack, provider: FakeProviderServer) -> Stack:
    """The distributed stack with three more agents: one on the fake provider, one whose
    monthly budget is spent, one whose output moderation blocks a word."""
    code = f"""
from agents.models import Agent, Provider
from moderation.models import Policy, Rule
demo = Provider.objects.get(name="demo")
fake, _ = Provider.objects.update_or_create(
    name="fake", defaults=dict(kind="openai", base_url={provider.base_url!r}, max_retries=0))
Agent.objects.update_or_create(slug="fake-chat", defaults=dict(
    name="Fake", provider=fake, model_name="gpt-4o", instructions="Agent rules stay.", tools=[]))
Agent.objects.update_or_create(slug="broke", defaults=dict(
    name="Broke", provider=demo, model_name="demo", monthly_budget_usd=0))
policy, _ = Policy.objects.get_or_create(name="no-pineapple")
Rule.objects.get_or_create(policy=policy, name="pineapple", defaults=dict(
    kind="keyword", params={{"terms": ["pineapple"]}}, stages=["output"], action="block"))
Agent.objects.update_or_create(slug="guarded", defaults=dict(
    name="Guarded", provider=demo, model_name="demo", moderation_policy=policy))
"""
    distributed_stack.manage("shell", "-v0", "-c", code)
    return distributed_stack


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.token, max_retries=0)


@pytest.fixture
def aclient(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.token, max_retries=0)


def run_of(stack: Stack, public_id: str) -> dict[str, Any]:
    run_id = public_id.removeprefix("chatcmpl-").removeprefix("resp_")
    with stack.client() as http:
        response = http.get(f"/api/v1/runs/{run_id}/")
        assert response.status_code == 200, response.text
        return response.json()


def test_models_are_the_active_agents(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert DEMO in ids and "fake-chat" in ids
    assert client.models.retrieve(DEMO).id == DEMO
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-agent")


def test_a_chat_completion_is_an_ordinary_run(stack: Stack, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=DEMO, messages=[{"role": "user", "content": "What is 12*7?"}]
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert "84" in (choice.message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    run = run_of(stack, completion.id)
    assert run["status"] == "succeeded"
    assert run["output"] == choice.message.content
    assert run["usage"]["output_tokens"] == completion.usage.completion_tokens
    assert run["usage"]["tool_calls"] == 1  # the agent's calculator ran server-side


def test_a_streamed_chat_completion_carries_all_text_and_usage(
    stack: Stack, client: openai.OpenAI
) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    stream = client.chat.completions.create(
        model=DEMO,
        messages=[{"role": "user", "content": words}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    run = run_of(stack, chunks[0].id)
    assert text == run["output"] and words in text
    assert chunks[-1].usage.completion_tokens == run["usage"]["output_tokens"] > 0
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 10


def test_history_and_system_messages_reach_the_provider_after_the_agents_instructions(
    client: openai.OpenAI, provider: FakeProviderServer
) -> None:
    provider.reset()
    completion = client.chat.completions.create(
        model="fake-chat",
        messages=[
            {"role": "system", "content": "Client wants brevity."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
        temperature=0.3,
        max_tokens=50,
        stop=["END"],
        user="end-user-1",
        metadata={"ticket": "42"},
    )
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    sent = provider.requests[-1]["json"]
    roles = [(m["role"], m["content"]) for m in sent["messages"]]
    assert roles[0][0] == "system"
    assert roles[0][1].index("Agent rules stay.") < roles[0][1].index("Client wants brevity.")
    assert roles[1:] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert sent["temperature"] == 0.3
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 50
    assert sent["stop"] == ["END"]


def test_sdk_error_classes(stack: Stack, client: openai.OpenAI) -> None:
    bad = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="sy_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "x"}], n=2)
    assert many.value.param == "n"
    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(
            model=DEMO,
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert tools.value.param == "tools"
    with pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(model="broke", messages=[{"role": "user", "content": "x"}])
    assert quota.value.code == "insufficient_quota"


def test_a_provider_failure_is_an_api_error(
    client: openai.OpenAI, provider: FakeProviderServer
) -> None:
    provider.reset()
    provider.script(Scenario(kind="status", status=500), Scenario(kind="status", status=500))
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "x"}]
        )
    assert failed.value.code == "provider_unavailable"
    stream = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as streamed:
        list(stream)
    assert "provider" in streamed.value.message.lower()


def test_a_moderation_block_ends_with_content_filter(stack: Stack, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "I like pineapple pizza"}]
    completion = client.chat.completions.create(model="guarded", messages=messages)
    assert completion.choices[0].finish_reason == "content_filter"
    assert "pineapple" not in (completion.choices[0].message.content or "")
    assert run_of(stack, completion.id)["status"] == "blocked"
    chunks = list(client.chat.completions.create(model="guarded", messages=messages, stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "pineapple" not in "".join(c.choices[0].delta.content or "" for c in chunks)
    response = client.responses.create(model="guarded", input="I like pineapple pizza")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert "pineapple" not in response.output_text


def test_max_tokens_caps_the_run_with_finish_reason_length(client: openai.OpenAI) -> None:
    words = " ".join(f"w{i}" for i in range(30))
    completion = client.chat.completions.create(
        model=DEMO, messages=[{"role": "user", "content": words}], max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"


def test_the_async_client_streams_and_completes(aclient: openai.AsyncOpenAI) -> None:
    async def go() -> tuple[str, str, str]:
        stream = await aclient.chat.completions.create(
            model=DEMO, messages=[{"role": "user", "content": "async hello"}], stream=True
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        whole = await aclient.chat.completions.create(
            model=DEMO, messages=[{"role": "user", "content": "async hello"}]
        )
        response = await aclient.responses.create(model=DEMO, input="async hello")
        return streamed, whole.choices[0].message.content or "", response.output_text

    streamed, whole, response_text = asyncio.run(go())
    assert streamed == whole == response_text
    assert "async hello" in whole


def test_a_streamed_response_has_the_responses_event_sequence(
    stack: Stack, client: openai.OpenAI
) -> None:
    events = list(client.responses.create(model=DEMO, input="stream me please", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1].response
    assert done.id.startswith("resp_") and done.status == "completed"
    assert done.output_text == text and "stream me please" in text
    assert done.usage is not None and done.usage.output_tokens > 0
    assert run_of(stack, done.id)["output"] == text
    with client.responses.stream(model=DEMO, input="helper stream") as helper:
        final = helper.get_final_response()
    assert "helper stream" in final.output_text


def test_previous_response_id_continues_the_same_thread(
    stack: Stack, client: openai.OpenAI, provider: FakeProviderServer
) -> None:
    provider.reset()
    first = client.responses.create(
        model="fake-chat", input="remember me", instructions="Be terse."
    )
    second = client.responses.create(
        model="fake-chat", input="and now?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert run_of(stack, first.id)["thread"] == run_of(stack, second.id)["thread"] is not None
    sent = [(m["role"], m["content"]) for m in provider.requests[-1]["json"]["messages"]]
    assert ("user", "remember me") in sent and ("assistant", DEFAULT_TEXT) in sent
    assert sent[-1] == ("user", "and now?")
    assert client.responses.retrieve(second.id).output_text == DEFAULT_TEXT


def test_a_background_response_can_be_polled_and_cancelled(client: openai.OpenAI) -> None:
    long_input = " ".join(f"word{i}" for i in range(400))  # ~8 s at 20 ms a word
    started = client.responses.create(model=DEMO, input=long_input, background=True)
    assert started.status in {"queued", "in_progress"} and started.background
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status in {"cancelled", "in_progress"}
    deadline = time.monotonic() + 15
    while client.responses.retrieve(started.id).status != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    finished = client.responses.create(model=DEMO, input="short", background=True)
    while client.responses.retrieve(finished.id).status != "completed":
        assert time.monotonic() < deadline + 15
        time.sleep(0.2)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(finished.id)


def test_a_client_disconnecting_mid_stream_does_not_cancel_the_run(
    stack: Stack, client: openai.OpenAI
) -> None:
    long_input = " ".join(f"word{i}" for i in range(100))
    stream = client.chat.completions.create(
        model=DEMO, messages=[{"role": "user", "content": long_input}], stream=True
    )
    first = next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 20
    while (run := run_of(stack, first.id))["status"] not in {"succeeded", "failed", "cancelled"}:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert run["status"] == "succeeded"
    assert long_input in run["output"]


def test_curl_style_http_gets_openai_json(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.token}"},
        json={"model": DEMO, "messages": [{"role": "user", "content": "plain http"}]},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["role"] == "assistant"


def test_langchain_chat_openai(stack: Stack) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=DEMO, base_url=f"{stack.base_url}/v1", api_key=stack.token, max_retries=0
    )
    answer = llm.invoke("What is 6*7?")
    assert "42" in str(answer.content)
    streamed = "".join(str(chunk.content) for chunk in llm.stream("langchain stream"))
    assert "langchain stream" in streamed
