"""Prove the fake provider speaks the real protocols, by driving it with the real SDK clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import openai
import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import (
    ModelAuthenticationError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelServerError,
)
from pydantic_ai.messages import AgentStreamEvent, PartDeltaEvent, TextPartDelta
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from tests.fakes import fixtures
from tests.fakes.provider_server import DEFAULT_TEXT, FakeProviderServer, Scenario

# Imported rather than registered in a conftest: the integrator decides where it lives.
fake_provider = fixtures.fake_provider

# A hung fake must fail the test, not the whole run.
pytestmark = pytest.mark.timeout(15)

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WEATHER_ARGS = {"city": "Paris", "unit": "celsius", "days": 3}


def openai_client(server: FakeProviderServer, timeout: float = 5.0) -> openai.AsyncOpenAI:
    # max_retries=0: retries would hide the status the fake sent, and slow the test down.
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=0, timeout=timeout
    )


def anthropic_client(server: FakeProviderServer) -> anthropic.AsyncAnthropic:
    # The Anthropic SDK appends /v1/messages itself, so it gets the root URL.
    return anthropic.AsyncAnthropic(
        base_url=server.root_url, api_key="test", max_retries=0, timeout=5.0
    )


async def stream_openai(
    client: openai.AsyncOpenAI, **kwargs: Any
) -> list[openai.types.chat.ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs
    )
    return [chunk async for chunk in stream]


async def wait_for_disconnect(server: FakeProviderServer, count: int = 1) -> bool:
    # wait_for_disconnect blocks a thread; keep the event loop free while it waits.
    return await asyncio.to_thread(server.wait_for_disconnect, 3.0, count)


# ---------------------------------------------------------------------------------------------
# OpenAI SDK
# ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_openai_streams_text_word_by_word_with_usage_chunk(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.script(Scenario(text="one two three", usage=(5, 3)))

    chunks = await stream_openai(
        openai_client(fake_provider), stream_options={"include_usage": True}
    )

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["one ", "two ", "three"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 3)
    request = fake_provider.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer test"
    assert request["json"]["stream_options"] == {"include_usage": True}


@pytest.mark.asyncio
async def test_openai_stream_without_include_usage_has_no_usage_chunk(
    fake_provider: FakeProviderServer,
) -> None:
    chunks = await stream_openai(openai_client(fake_provider))

    assert all(chunk.usage is None for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_TEXT  # empty queue -> default scenario


@pytest.mark.asyncio
async def test_openai_streamed_tool_call_arguments_reassemble(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.script(
        Scenario(kind="tool_call", tool_name="get_weather", tool_args=WEATHER_ARGS)
    )

    chunks = await stream_openai(openai_client(fake_provider))

    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    fragments = [tc.function.arguments for tc in calls if tc.function and tc.function.arguments]
    assert len(fragments) > 3  # really split across several chunks
    assert json.loads("".join(fragments)) == WEATHER_ARGS
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["tool_calls"]


@pytest.mark.asyncio
async def test_openai_non_streaming_text_and_tool_call(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(
        Scenario(text="plain answer"),
        Scenario(kind="tool_call", tool_name="lookup", tool_args={"q": "x"}),
    )
    client = openai_client(fake_provider)

    text = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    tool = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert text.choices[0].message.content == "plain answer"
    assert text.usage is not None
    assert text.usage.total_tokens == 18
    call = (tool.choices[0].message.tool_calls or [])[0]
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"q": "x"})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
async def test_openai_status_errors(
    fake_provider: FakeProviderServer, status: int, error_class: type[openai.APIStatusError]
) -> None:
    fake_provider.script(Scenario(kind="status", status=status, retry_after=2.0))

    with pytest.raises(error_class) as caught:
        await stream_openai(openai_client(fake_provider))

    assert caught.value.status_code == status
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.response.headers["retry-after-ms"] == "2000"
    assert len(fake_provider.requests) == 1  # max_retries=0 really made one attempt


@pytest.mark.asyncio
async def test_openai_malformed_chunk_raises(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(Scenario(kind="malformed", malformed_after_chunks=2))

    # The SDK json-decodes each SSE `data:` line itself and lets the decode error escape.
    with pytest.raises((json.JSONDecodeError, openai.APIError)):
        await stream_openai(openai_client(fake_provider))


@pytest.mark.asyncio
async def test_openai_dropped_connection_raises(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(Scenario(kind="drop", drop_after_chunks=2))

    with pytest.raises(openai.APIConnectionError):
        await stream_openai(openai_client(fake_provider))


@pytest.mark.asyncio
async def test_openai_stall_trips_client_timeout(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(Scenario(kind="stall", stall_after_chunks=2))
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        await stream_openai(openai_client(fake_provider, timeout=0.3))

    assert time.monotonic() - started < 2.0
    # The client gave up and closed the socket; the stalled server side notices.
    assert await wait_for_disconnect(fake_provider)


@pytest.mark.asyncio
async def test_openai_models_and_moderation(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(Scenario(endpoint="moderations", flagged_categories=("violence",)))
    client = openai_client(fake_provider)

    models = await client.models.list()
    flagged = await client.moderations.create(input=["bad", "worse"])
    clean = await client.moderations.create(input="fine")

    assert [m.id for m in models.data] == ["gpt-fake"]
    assert [r.flagged for r in flagged.results] == [True, True]
    assert flagged.results[0].categories.violence is True
    assert flagged.results[0].categories.hate is False
    assert clean.results[0].flagged is False


# ---------------------------------------------------------------------------------------------
# Anthropic SDK
# ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_anthropic_streams_text(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(Scenario(text="alpha beta gamma", usage=(9, 4)))
    client = anthropic_client(fake_provider)

    async with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()

    assert pieces == ["alpha ", "beta ", "gamma"]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 4)
    request = fake_provider.requests[-1]
    assert request["path"] == "/v1/messages"
    # anthropic 2.x authenticates with a bearer token, older releases with x-api-key.
    auth = request["headers"].get("x-api-key") or request["headers"]["authorization"]
    assert auth in ("test", "Bearer test")


@pytest.mark.asyncio
async def test_anthropic_streams_tool_use_with_split_input_json(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.script(
        Scenario(kind="tool_call", tool_name="get_weather", tool_args=WEATHER_ARGS)
    )
    client = anthropic_client(fake_provider)

    partials: list[str] = []
    async with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        message = await stream.get_final_message()

    assert len(partials) > 3
    block = message.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", WEATHER_ARGS)
    assert message.stop_reason == "tool_use"


@pytest.mark.asyncio
async def test_anthropic_non_streaming_and_rate_limit(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(Scenario(text="short"), Scenario(kind="status", status=429, retry_after=1))
    client = anthropic_client(fake_provider)

    message = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)

    assert message.content[0].type == "text"
    assert message.content[0].text == "short"
    assert caught.value.response.headers["retry-after"] == "1"


# ---------------------------------------------------------------------------------------------
# pydantic-ai end to end
# ---------------------------------------------------------------------------------------------


def openai_model(server: FakeProviderServer) -> Model:
    return OpenAIChatModel(
        "gpt-4o-mini", provider=OpenAIProvider(base_url=server.base_url, api_key="test")
    )


def anthropic_model(server: FakeProviderServer) -> Model:
    return AnthropicModel(
        "claude-haiku-4-5", provider=AnthropicProvider(base_url=server.root_url, api_key="test")
    )


ModelFactory = Callable[[FakeProviderServer], Model]
MODEL_FACTORIES = [
    pytest.param(openai_model, id="openai"),
    pytest.param(anthropic_model, id="anthropic"),
]


def weather_agent(model: Model, calls: list[str]) -> Agent[None, str]:
    agent = Agent(model, instructions="Answer weather questions.")

    @agent.tool_plain
    def get_weather(city: str, unit: str, days: int) -> str:
        calls.append(city)
        return f"Sunny in {city} for {days} days, 20 {unit}"

    return agent


@pytest.mark.asyncio
@pytest.mark.parametrize("make_model", MODEL_FACTORIES)
async def test_pydantic_ai_agent_streams_tool_call_then_text(
    fake_provider: FakeProviderServer, make_model: ModelFactory
) -> None:
    fake_provider.script(
        Scenario(kind="tool_call", tool_name="get_weather", tool_args=WEATHER_ARGS),
        Scenario(text="It is sunny in Paris."),
    )
    calls: list[str] = []
    deltas: list[str] = []

    async def on_events(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for event in events:
            if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                deltas.append(event.delta.content_delta)

    result = await weather_agent(make_model(fake_provider), calls).run(
        "Weather in Paris?", event_stream_handler=on_events
    )

    assert calls == ["Paris"]
    assert result.output == "It is sunny in Paris."
    assert len(deltas) > 1  # the final text really streamed in pieces
    assert "".join(deltas).endswith("Paris.")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (22, 14)
    bodies = [r["json"] for r in fake_provider.requests]
    assert len(bodies) == 2
    assert all(body["stream"] for body in bodies)


@pytest.mark.asyncio
async def test_pydantic_ai_openai_requests_stream_usage(fake_provider: FakeProviderServer) -> None:
    agent = Agent(openai_model(fake_provider))

    async with agent.run_stream("hi") as run:
        text = await run.get_output()

    assert text == DEFAULT_TEXT
    assert fake_provider.requests[-1]["json"]["stream_options"] == {"include_usage": True}


@pytest.mark.asyncio
@pytest.mark.parametrize("make_model", MODEL_FACTORIES)
@pytest.mark.parametrize(
    ("status", "category"),
    [(401, ModelAuthenticationError), (429, ModelRateLimitError), (500, ModelServerError)],
)
async def test_pydantic_ai_maps_status_errors(
    fake_provider: FakeProviderServer,
    make_model: ModelFactory,
    status: int,
    category: type[Exception],
) -> None:
    fake_provider.script(Scenario(kind="status", status=status, retry_after=1.5))
    agent = Agent(make_model(fake_provider))

    with pytest.raises(ModelHTTPError) as caught:
        await agent.run("hi", model_settings={"max_retries": 0})

    assert isinstance(caught.value, category)
    assert caught.value.status_code == status
    assert caught.value.retry_after == 1.5


# ---------------------------------------------------------------------------------------------
# Disconnects, cancellation, concurrency
# ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_client_closing_stream_is_recorded_as_disconnect(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.script(Scenario(text="a b c d e f g h", chunk_delay_s=0.05))
    stream = await openai_client(fake_provider).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    received = 0
    async for _chunk in stream:
        received += 1
        if received == 2:
            assert fake_provider.active_streams == 1
            before = time.monotonic()
            await stream.close()
            break

    assert await wait_for_disconnect(fake_provider)
    assert fake_provider.disconnects[0] >= before
    assert fake_provider.active_streams == 0


@pytest.mark.asyncio
async def test_cancelling_agent_run_disconnects_from_provider(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.script(Scenario(text="slow " * 50, chunk_delay_s=0.02))
    agent = Agent(anthropic_model(fake_provider))
    first_delta = asyncio.Event()

    async def on_events(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for _event in events:
            first_delta.set()

    task = asyncio.create_task(agent.run("hi", event_stream_handler=on_events))
    await asyncio.wait_for(first_delta.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await wait_for_disconnect(fake_provider)
    assert fake_provider.active_streams == 0


@asynccontextmanager
async def watch_active_streams(server: FakeProviderServer) -> AsyncIterator[list[int]]:
    """Sample ``active_streams`` in the background; yields the list of samples."""
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(server.active_streams)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()


@pytest.mark.asyncio
async def test_serves_concurrent_streams(fake_provider: FakeProviderServer) -> None:
    fake_provider.script(*(Scenario(text="a b c d e", chunk_delay_s=0.05) for _ in range(3)))
    client = openai_client(fake_provider)
    started = time.monotonic()

    async with watch_active_streams(fake_provider) as samples:
        results = await asyncio.gather(*(stream_openai(client) for _ in range(3)))

    # Served one after another this would take ~3 x 0.3 s.
    assert time.monotonic() - started < 0.8
    assert max(samples) == 3
    assert all(len(chunks) == 7 for chunks in results)  # role + 5 words + finish


@pytest.mark.asyncio
async def test_endpoint_scoped_scenarios_are_skipped_by_other_endpoints(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.script(
        Scenario(endpoint="messages", text="for anthropic"),
        Scenario(endpoint="chat", text="for openai"),
    )

    openai_reply = await openai_client(fake_provider).chat.completions.create(
        model="gpt-4o", messages=MESSAGES
    )
    anthropic_reply = await anthropic_client(fake_provider).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
    )

    assert openai_reply.choices[0].message.content == "for openai"
    assert anthropic_reply.content[0].type == "text"
    assert anthropic_reply.content[0].text == "for anthropic"
    assert fake_provider.pending == []
