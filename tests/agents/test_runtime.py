"""The runtime against real provider clients talking to a local fake provider server.

Only the provider (outside the machine) is faked, at the network edge: pydantic-ai's
OpenAI and Anthropic clients speak HTTP to ``tests.fakes.provider_server``.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from genai_prices import Usage, calc_price

from agents.models import Agent, ModelCall, PriceOverride, Provider, ProviderKind, Run, RunEvent
from agents.runtime import execute_run
from agents.services import run_cancel, run_create
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

KEY = "sk-test-canary-7f3a9b2c1d0e"


@pytest_asyncio.fixture(autouse=True)
async def _close_executor_connections() -> Any:
    """The executor's ORM calls run in asgiref's worker thread; close its connection so the
    test database can be dropped at the end of the session."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def provider_key(db: None) -> Any:
    from secrets_vault.services import secret_create

    return secret_create(name="openai-key", value=KEY)


def make_agent(
    server: FakeProviderServer, *, kind: str = "openai", key: Any = None, **fields: Any
) -> Agent:
    base_url = server.base_url if kind == ProviderKind.OPENAI else server.root_url
    provider, _ = Provider.objects.get_or_create(
        name=f"fake-{kind}",
        defaults={
            "kind": kind,
            "base_url": base_url,
            "api_key": key,
            "timeout_s": 2,
            "max_retries": 3,
        },
    )
    defaults = {
        "slug": f"fake-{kind}-agent",
        "name": "Fake",
        "provider": provider,
        "model_name": "gpt-4o" if kind == ProviderKind.OPENAI else "claude-haiku-4-5",
        "tools": ["calculator"],
    }
    defaults.update(fields)
    return Agent.objects.create(**defaults)


async def run_to_end(agent: Agent, owner: Any, text: str = "Hello", **kwargs: Any) -> Run:
    run, _ = await sync_to_async(run_create)(
        agent=agent, owner=owner, input=text, enqueue=False, **kwargs
    )
    await execute_run(run.id)
    return await Run.objects.aget(pk=run.id)


async def events_of(run: Run) -> list[RunEvent]:
    return [e async for e in RunEvent.objects.filter(run=run).order_by("seq")]


async def assert_gap_free(run: Run) -> list[RunEvent]:
    events = await events_of(run)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return events


async def test_it_streams_text_from_an_openai_compatible_provider(
    fake_provider: FakeProviderServer, alice: Any, provider_key: Any
) -> None:
    # Given an agent on an OpenAI-compatible endpoint with its key in the vault
    agent = await sync_to_async(make_agent)(fake_provider, key=provider_key)
    fake_provider.script(Scenario(text="Streaming works fine today", usage=(120, 30)))
    # When a run executes
    run = await run_to_end(agent, alice)
    # Then it succeeds with the streamed text and the provider's own usage
    assert run.status == "succeeded", run.error_message
    assert run.output == "Streaming works fine today"
    assert (run.input_tokens, run.output_tokens, run.usage_estimated) == (120, 30, False)
    events = await assert_gap_free(run)
    deltas = "".join(e.data["delta"] for e in events if e.type == "message.delta")
    assert deltas == run.output
    request = fake_provider.requests[-1]
    assert request["json"]["stream_options"] == {"include_usage": True}
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    # And the key never appears in an event, and its reveal was audited once for this run
    assert all(KEY not in str(e.data) for e in events)
    from secrets_vault.models import SecretAccessEvent

    accesses = [a async for a in SecretAccessEvent.objects.filter(purpose=f"run:{run.id}")]
    assert len(accesses) == 1


async def test_its_cost_matches_genai_prices_to_the_cent(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(Scenario(text="Priced", usage=(12_345, 6_789)))
    run = await run_to_end(agent, alice)
    expected = calc_price(
        Usage(input_tokens=12_345, output_tokens=6_789), "gpt-4o", provider_id="openai"
    ).total_price
    call = await ModelCall.objects.aget(run=run)
    assert call.price_source == "genai_prices"
    assert round(call.cost_usd, 2) == round(Decimal(str(expected)), 2)
    assert abs(call.cost_usd - Decimal(str(expected))) < Decimal("0.000001")
    assert run.cost_usd == call.cost_usd


async def test_a_price_override_takes_precedence(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, model_name="my-llama")
    await PriceOverride.objects.acreate(
        model_name="my-llama", input_per_mtok_usd=Decimal("1"), output_per_mtok_usd=Decimal("2")
    )
    fake_provider.script(Scenario(text="Cheap", usage=(1_000_000, 500_000)))
    run = await run_to_end(agent, alice)
    call = await ModelCall.objects.aget(run=run)
    assert (call.price_source, call.cost_usd) == ("override", Decimal("2"))


async def test_the_provider_s_own_override_wins_and_another_provider_s_never_applies(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, model_name="my-llama")
    other = await Provider.objects.acreate(name="other", kind="openai", base_url="http://x/")
    prices = {"input_per_mtok_usd": Decimal("100"), "output_per_mtok_usd": Decimal("100")}
    await PriceOverride.objects.acreate(provider=other, model_name="my-llama", **prices)
    fake_provider.script(Scenario(text="Hi", usage=(1_000_000, 500_000)))
    run = await run_to_end(agent, alice)  # only another provider's override: not priced
    call = await ModelCall.objects.aget(run=run)
    assert (call.price_source, call.cost_usd) == ("unknown", Decimal(0))

    await PriceOverride.objects.acreate(
        model_name="my-llama", input_per_mtok_usd=Decimal("1"), output_per_mtok_usd=Decimal("2")
    )
    await PriceOverride.objects.acreate(
        provider_id=agent.provider_id,
        model_name="my-llama",
        input_per_mtok_usd=Decimal("3"),
        output_per_mtok_usd=Decimal("4"),
    )
    fake_provider.script(Scenario(text="Hi", usage=(1_000_000, 500_000)))
    run = await run_to_end(agent, alice)
    call = await ModelCall.objects.aget(run=run)
    assert (call.price_source, call.cost_usd) == ("override", Decimal("5"))  # 3 + 4 / 2


async def test_an_unknown_model_costs_nothing_and_says_so(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, model_name="my-unpriced-model")
    fake_provider.script(Scenario(text="Free?"))
    run = await run_to_end(agent, alice)
    call = await ModelCall.objects.aget(run=run)
    assert (call.price_source, call.cost_usd) == ("unknown", Decimal(0))


async def test_a_streamed_tool_call_with_split_arguments_runs_the_tool(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(
        Scenario(
            kind="tool_call",
            tool_name="calculator",
            tool_args={"expression": "12*7"},
            args_chunk_chars=3,
        ),
        Scenario(text="It is 84"),
    )
    run = await run_to_end(agent, alice, "What is 12*7?")
    assert run.status == "succeeded"
    events = await assert_gap_free(run)
    result = next(e for e in events if e.type == "tool.result")
    assert result.data["ok"] is True and result.data["output"] == "84"
    assert run.requests == 2 and run.tool_calls == 1
    assert run.input_tokens == 22 and run.output_tokens == 14
    second = fake_provider.requests[-1]["json"]["messages"]
    assert any(m.get("role") == "tool" and m.get("content") == "84" for m in second)


async def test_a_bad_tool_argument_goes_back_to_the_model_and_the_run_goes_on(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(
        Scenario(kind="tool_call", tool_name="calculator", tool_args={"expression": "1/0"}),
        Scenario(text="Cannot divide by zero"),
    )
    run = await run_to_end(agent, alice)
    assert run.status == "succeeded"
    result = next(e for e in await events_of(run) if e.type == "tool.result")
    assert result.data["ok"] is False and "Division by zero" in result.data["error"]


async def test_it_streams_text_and_tools_from_anthropic(
    fake_provider: FakeProviderServer, alice: Any, provider_key: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, kind="anthropic", key=provider_key)
    fake_provider.script(
        Scenario(
            kind="tool_call",
            tool_name="calculator",
            tool_args={"expression": "2+3"},
            args_chunk_chars=4,
        ),
        Scenario(text="Five it is", usage=(40, 9)),
    )
    run = await run_to_end(agent, alice)
    assert run.status == "succeeded", run.error_message
    assert run.output == "Five it is"
    assert fake_provider.requests[-1]["path"].startswith("/v1/messages")


async def test_two_rate_limits_are_retried_and_visible_in_the_events(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(
        Scenario(kind="status", status=429, retry_after=0.05),
        Scenario(kind="status", status=429, retry_after=0.05),
        Scenario(text="Third time lucky"),
    )
    run = await run_to_end(agent, alice)
    assert run.status == "succeeded"
    retries = [e for e in await assert_gap_free(run) if e.type == "provider.retry"]
    assert [r.data["attempt"] for r in retries] == [1, 2]
    assert all(r.data["code"] == "provider_rate_limited" for r in retries)
    assert all(r.data["delay_s"] == pytest.approx(0.05, abs=0.01) for r in retries)


@pytest.mark.parametrize(
    "scenario,code",
    [
        (Scenario(kind="status", status=401), "provider_auth_failed"),
        (Scenario(kind="malformed", malformed_after_chunks=1), "provider_bad_response"),
    ],
)
async def test_a_permanent_provider_failure_fails_the_run_with_its_code(
    fake_provider: FakeProviderServer, alice: Any, scenario: Scenario, code: str
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(scenario)
    run = await run_to_end(agent, alice)
    assert (run.status, run.error_code) == ("failed", code)
    assert len(fake_provider.requests) == 1  # not retried
    terminal = (await events_of(run))[-1]
    assert terminal.type == "run.failed" and terminal.data["error"]["code"] == code


async def test_a_provider_that_keeps_failing_is_retried_then_fails_the_run(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    await Provider.objects.filter(pk=agent.provider_id).aupdate(max_retries=2)
    agent = await Agent.objects.select_related("provider").aget(pk=agent.pk)
    fake_provider.script(*[Scenario(kind="status", status=500) for _ in range(3)])
    run = await run_to_end(agent, alice)
    assert (run.status, run.error_code) == ("failed", "provider_unavailable")
    assert len(fake_provider.requests) == 3


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(kind="stall", stall_after_chunks=2),
        Scenario(kind="drop", drop_after_chunks=2),
    ],
)
async def test_a_stream_that_stalls_or_drops_mid_way_fails_the_run(
    fake_provider: FakeProviderServer, alice: Any, scenario: Scenario
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(scenario)
    started = time.monotonic()
    run = await run_to_end(agent, alice)
    assert run.status == "failed"
    assert run.error_code in {"provider_unavailable", "provider_bad_response"}
    assert time.monotonic() - started < 10
    await assert_gap_free(run)


async def test_cancel_during_a_model_stream_closes_the_connection_within_two_seconds(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    # Given a run streaming slowly
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(Scenario(text=" ".join(["word"] * 200), chunk_delay_s=0.05))
    run, _ = await sync_to_async(run_create)(agent=agent, owner=alice, input="go", enqueue=False)
    task = asyncio.create_task(execute_run(run.id))
    while not await RunEvent.objects.filter(run=run, type="message.delta").aexists():
        await asyncio.sleep(0.02)
    # When a cancel is requested
    requested = time.monotonic()
    assert await sync_to_async(run_cancel)(run_id=run.id) == "cancelling"
    # Then the provider sees the disconnect within 2 s and the run ends cancelled
    assert await asyncio.to_thread(fake_provider.wait_for_disconnect, 2.0)
    disconnect_after = fake_provider.disconnects[0] - requested
    assert await task == "cancelled"
    final = await Run.objects.aget(pk=run.id)
    events = await assert_gap_free(final)
    assert events[-1].type == "run.cancelled"
    print(f"cancel request -> provider disconnect: {disconnect_after * 1000:.0f} ms")
    assert disconnect_after < 2.0
    assert final.output.startswith("word")  # partial output is kept
    assert await ModelCall.objects.filter(run=final).aexists()  # and so is usage


async def test_the_request_limit_fails_the_run_naming_the_limit(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, max_requests=1)
    fake_provider.script(
        Scenario(kind="tool_call", tool_name="calculator", tool_args={"expression": "1+1"}),
        Scenario(text="never"),
    )
    run = await run_to_end(agent, alice)
    assert (run.status, run.error_code) == ("failed", "limit_exceeded")
    terminal = (await events_of(run))[-1]
    assert terminal.data["error"]["limit"] == "max_requests"


async def test_the_cost_limit_stops_the_run_after_the_call_that_crossed_it(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, max_cost_usd=Decimal("0.001"))
    fake_provider.script(
        Scenario(
            kind="tool_call",
            tool_name="calculator",
            tool_args={"expression": "1+1"},
            usage=(10_000, 100),
        ),
        Scenario(text="never"),
    )
    run = await run_to_end(agent, alice)
    assert (run.status, run.error_code) == ("failed", "limit_exceeded")
    assert (await events_of(run))[-1].data["error"]["limit"] == "max_cost_usd"
    assert len(fake_provider.requests) == 1


async def test_a_run_may_lower_but_not_raise_the_agent_limits(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    from core.errors import ApplicationError

    agent = await sync_to_async(make_agent)(fake_provider, timeout_s=30)
    with pytest.raises(ApplicationError, match="may not exceed"):
        await sync_to_async(run_create)(
            agent=agent, owner=alice, input="x", limits={"timeout_s": 60}, enqueue=False
        )
    fake_provider.script(Scenario(kind="stall", stall_after_chunks=1))
    await Provider.objects.filter(pk=agent.provider_id).aupdate(timeout_s=30)
    run = await run_to_end(agent, alice, limits={"timeout_s": 1})
    assert (run.status, run.error_code) == ("timed_out", "timed_out")
    assert (await events_of(run))[-1].type == "run.timed_out"


async def test_a_spent_monthly_budget_refuses_new_runs_with_402(
    fake_provider: FakeProviderServer, alice: Any, alice_api: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, monthly_budget_usd=Decimal("0.01"))
    fake_provider.script(Scenario(text="pricey", usage=(100_000, 10_000)))
    first = await run_to_end(agent, alice)
    assert first.status == "succeeded" and first.cost_usd > Decimal("0.01")
    response = await sync_to_async(alice_api.post)(
        f"/api/v1/agents/{agent.slug}/runs/", {"input": "again"}, format="json"
    )
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "budget_exhausted"


async def test_a_run_in_flight_stops_once_the_budget_is_spent(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider, monthly_budget_usd=Decimal("0.01"))
    fake_provider.script(
        Scenario(
            kind="tool_call",
            tool_name="calculator",
            tool_args={"expression": "1+1"},
            usage=(100_000, 100),
        ),
        Scenario(text="never"),
    )
    run = await run_to_end(agent, alice)
    assert (run.status, run.error_code) == ("failed", "budget_exhausted")
    assert len(fake_provider.requests) == 1


async def test_a_thread_carries_the_conversation_into_the_next_run(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    from agents.thread_services import thread_create

    agent = await sync_to_async(make_agent)(fake_provider, tools=[])
    thread = await sync_to_async(thread_create)(agent=agent, owner=alice)
    fake_provider.script(Scenario(text="Nice to meet you Alice"), Scenario(text="You are Alice"))
    first = await run_to_end(agent, alice, "My name is Alice", thread=thread)
    second = await run_to_end(agent, alice, "What is my name?", thread=thread)
    assert first.status == second.status == "succeeded"
    sent = fake_provider.requests[-1]["json"]["messages"]
    contents = [m.get("content") for m in sent]
    assert "My name is Alice" in str(contents) and "Nice to meet you Alice" in str(contents)


async def test_delegate_runs_a_child_agent_and_rolls_its_cost_up(
    fake_provider: FakeProviderServer, alice: Any, demo_agent: Agent
) -> None:
    parent_agent = await sync_to_async(make_agent)(
        fake_provider, tools=["delegate"], tool_config={"delegate": {"agents": ["child"]}}
    )
    child_agent = await sync_to_async(make_agent)(fake_provider, slug="child", tools=[])
    assert child_agent.slug == "child"
    fake_provider.script(
        Scenario(
            kind="tool_call",
            tool_name="delegate",
            tool_args={"agent": "child", "input": "Say hi"},
            usage=(10, 5),
        ),
        Scenario(text="Hi from the child", usage=(20, 6)),
        Scenario(text="The child said hi", usage=(30, 7)),
    )
    parent = await run_to_end(parent_agent, alice, "Ask the child")
    assert parent.status == "succeeded", parent.error_message
    child = await Run.objects.aget(parent=parent)
    assert (child.status, child.output, child.depth) == ("succeeded", "Hi from the child", 1)
    assert await RunEvent.objects.filter(run=child, type="run.succeeded").aexists()
    assert parent.input_tokens == 10 + 30 + 20
    assert parent.output_tokens == 5 + 7 + 6


async def test_delegating_to_an_agent_not_on_the_list_is_a_tool_error(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(
        fake_provider, tools=["delegate"], tool_config={"delegate": {"agents": []}}
    )
    fake_provider.script(
        Scenario(
            kind="tool_call", tool_name="delegate", tool_args={"agent": "other", "input": "x"}
        ),
        Scenario(text="ok"),
    )
    run = await run_to_end(agent, alice)
    result = next(e for e in await events_of(run) if e.type == "tool.result")
    assert result.data["ok"] is False and "not allowed" in result.data["error"]
    assert not await Run.objects.filter(parent=run).aexists()


async def test_a_model_that_keeps_calling_a_tool_wrongly_fails_with_tool_failed(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    agent = await sync_to_async(make_agent)(fake_provider)
    fake_provider.script(
        *[Scenario(kind="tool_call", tool_name="no_such_tool", tool_args={}) for _ in range(4)]
    )
    run = await run_to_end(agent, alice)
    assert (run.status, run.error_code) == ("failed", "tool_failed")
