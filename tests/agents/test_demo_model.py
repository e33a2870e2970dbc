"""The demo model: usage counted from the text it is sent, priced by an override."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async

from agents.models import ModelCall, PriceOverride, Run
from agents.runtime import execute_run
from agents.runtime.demo import count_tokens, plan_tool_call
from agents.services import run_create
from agents.thread_services import thread_create

DB = pytest.mark.django_db(transaction=True)


@pytest_asyncio.fixture
async def _close_executor_connections() -> Any:
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


async def run_to_end(agent: Any, owner: Any, text: str, **kwargs: Any) -> Run:
    run, _ = await sync_to_async(run_create)(
        agent=agent, owner=owner, input=text, enqueue=False, **kwargs
    )
    await execute_run(run.id)
    return await Run.objects.aget(pk=run.id)


def test_tokens_are_words_and_punctuation() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0


def test_the_demo_model_delegates_when_asked_and_allowed() -> None:
    assert plan_tool_call("Ask helper: 2+2", {"delegate"}) == (
        "delegate",
        {"agent": "helper", "input": "2+2"},
    )
    assert plan_tool_call("Ask helper: 2+2", {"calculator"}) == (
        "calculator",
        {"expression": "2+2"},
    )


@DB
@pytest.mark.asyncio
@pytest.mark.usefixtures("_close_executor_connections")
async def test_input_tokens_grow_with_the_text_and_the_thread_history(
    demo_agent: Any, alice: Any
) -> None:
    # Given a thread and a short first message
    thread = await sync_to_async(thread_create)(agent=demo_agent, owner=alice)
    first = await run_to_end(demo_agent, alice, "hello there", thread=thread)
    # When a second run in the same thread sends the same text
    second = await run_to_end(demo_agent, alice, "hello there", thread=thread)
    # Then it is charged for the history too, and a longer text costs more tokens
    assert second.input_tokens > first.input_tokens
    longer = await run_to_end(demo_agent, alice, "hello there " * 40)
    assert longer.input_tokens - first.input_tokens == 78  # 39 more "hello there"
    assert first.output_tokens >= len(first.output.split())  # pydantic-ai counts the words


@DB
@pytest.mark.asyncio
@pytest.mark.usefixtures("_close_executor_connections")
async def test_a_price_override_prices_the_demo_model(demo_agent: Any, alice: Any) -> None:
    await PriceOverride.objects.acreate(
        provider_id=demo_agent.provider_id,
        model_name=demo_agent.model_name,
        input_per_mtok_usd=Decimal("1000"),
        output_per_mtok_usd=Decimal("0"),
    )
    run = await run_to_end(demo_agent, alice, "hello there")
    assert run.status == "succeeded", run.error_message
    call = await ModelCall.objects.aget(run=run)
    assert call.price_source == "override"
    assert call.cost_usd == Decimal(call.input_tokens) / 1000
    assert run.cost_usd == call.cost_usd
