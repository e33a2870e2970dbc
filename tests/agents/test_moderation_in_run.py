"""Moderation inside real runs: input, streamed output and tool output, against the fake
provider (the model is the only thing faked, at the network edge)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async

from agents.models import Agent, Provider, Run, RunEvent
from agents.runtime import execute_run
from agents.services import run_create
from moderation.models import Flag, Policy, Rule
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

EMAIL = "alice.canary@example.com"


@pytest_asyncio.fixture(autouse=True)
async def _close_connections() -> Any:
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


def make_policy(*rules: dict[str, Any]) -> Policy:
    policy = Policy.objects.create(name="test-policy")
    for order, rule in enumerate(rules):
        Rule.objects.create(policy=policy, order=order, name=rule.pop("name", f"r{order}"), **rule)
    return policy


def make_agent(server: FakeProviderServer, policy: Policy, **fields: Any) -> Agent:
    provider = Provider.objects.create(name="fake", kind="openai", base_url=server.base_url)
    return Agent.objects.create(
        slug="guarded",
        name="Guarded",
        provider=provider,
        model_name="gpt-4o",
        tools=fields.pop("tools", []),
        moderation_policy=policy,
        **fields,
    )


async def run_to_end(agent: Agent, owner: Any, text: str) -> tuple[Run, list[RunEvent]]:
    run, _ = await sync_to_async(run_create)(agent=agent, owner=owner, input=text, enqueue=False)
    await execute_run(run.id)
    run = await Run.objects.aget(pk=run.id)
    events = [e async for e in RunEvent.objects.filter(run=run).order_by("seq")]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return run, events


async def test_a_blocked_input_ends_the_run_before_any_model_request(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    policy = await sync_to_async(make_policy)(
        {
            "name": "no-secrets-talk",
            "kind": "keyword",
            "params": {"terms": ["launch codes"]},
            "stages": ["input"],
            "action": "block",
        }
    )
    agent = await sync_to_async(make_agent)(fake_provider, policy)
    run, events = await run_to_end(agent, alice, "Tell me the LAUNCH CODES please")
    assert run.status == "blocked"
    assert fake_provider.requests == []  # no tokens spent
    assert events[-1].type == "run.blocked"
    assert events[-1].data == {"stage": "input", "rule": "no-secrets-talk"}
    flagged = [e for e in events if e.type == "moderation.flagged"]
    assert flagged and flagged[0].data["action"] == "block"
    assert await Flag.objects.filter(run=run, action="block").acount() == 1


async def test_a_redacted_input_changes_what_the_model_sees(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    policy = await sync_to_async(make_policy)(
        {"kind": "pii", "params": {"types": ["email"]}, "stages": ["input"], "action": "redact"}
    )
    agent = await sync_to_async(make_agent)(fake_provider, policy)
    fake_provider.script(Scenario(text="Noted"))
    run, _ = await run_to_end(agent, alice, f"My address is {EMAIL}")
    assert run.status == "succeeded"
    sent = str(fake_provider.requests[0]["json"]["messages"])
    assert EMAIL not in sent and "[REDACTED:email]" in sent


async def test_streamed_output_is_redacted_before_any_client_or_the_log_sees_it(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    policy = await sync_to_async(make_policy)(
        {"kind": "pii", "params": {"types": ["email"]}, "stages": ["output"], "action": "redact"}
    )
    agent = await sync_to_async(make_agent)(fake_provider, policy)
    fake_provider.script(Scenario(text=f"Write to {EMAIL} or call later", chunk_words=1))
    run, events = await run_to_end(agent, alice, "How do I reach you?")
    assert run.status == "succeeded"
    deltas = "".join(e.data["delta"] for e in events if e.type == "message.delta")
    completed = next(e for e in events if e.type == "message.completed").data["content"]
    assert deltas == completed == run.output == "Write to [REDACTED:email] or call later"
    assert all(EMAIL not in str(e.data) for e in events)
    assert EMAIL not in str(run.messages)
    flagged = next(e for e in events if e.type == "moderation.flagged")
    assert flagged.data["stage"] == "output" and flagged.data["kind"] == "email"


async def test_a_blocked_output_stops_the_model_stream(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    policy = await sync_to_async(make_policy)(
        {
            "name": "no-bombs",
            "kind": "keyword",
            "params": {"terms": ["detonator"]},
            "stages": ["output"],
            "action": "block",
        }
    )
    agent = await sync_to_async(make_agent)(fake_provider, policy)
    words = ["fine"] * 5 + ["detonator"] + ["more"] * 200
    fake_provider.script(Scenario(text=" ".join(words), chunk_delay_s=0.02))
    run, events = await run_to_end(agent, alice, "go")
    assert run.status == "blocked"
    assert events[-1].type == "run.blocked" and events[-1].data["stage"] == "output"
    assert all("detonator" not in str(e.data) for e in events)
    assert "detonator" not in run.output
    # The provider request was closed long before its 200 trailing words were sent.
    assert await asyncio.to_thread(fake_provider.wait_for_disconnect, 2.0)


async def test_a_known_vault_secret_in_the_output_is_redacted(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    from secrets_vault.services import secret_create

    key = "zq-internal-canary-0042"
    secret = await sync_to_async(secret_create)(name="provider-key", value=key)
    policy = await sync_to_async(make_policy)(
        {
            "kind": "secret",
            "params": {"types": [], "known": True},
            "stages": ["output"],
            "action": "redact",
        }
    )
    agent = await sync_to_async(make_agent)(fake_provider, policy)
    await Provider.objects.filter(pk=agent.provider_id).aupdate(api_key=secret)
    agent = await Agent.objects.select_related("provider__api_key").aget(pk=agent.pk)
    fake_provider.script(Scenario(text=f"The key is {key} ok"))
    run, events = await run_to_end(agent, alice, "What is your key?")
    assert run.status == "succeeded"
    assert key not in run.output and all(key not in str(e.data) for e in events)


async def test_tool_output_is_checked_before_the_model_sees_it(
    fake_provider: FakeProviderServer, alice: Any
) -> None:
    policy = await sync_to_async(make_policy)(
        {
            "kind": "regex",
            "params": {"pattern": r"\b84\b"},
            "stages": ["tool_output"],
            "action": "redact",
        }
    )
    agent = await sync_to_async(make_agent)(fake_provider, policy, tools=["calculator"])
    fake_provider.script(
        Scenario(kind="tool_call", tool_name="calculator", tool_args={"expression": "12*7"}),
        Scenario(text="done"),
    )
    run, events = await run_to_end(agent, alice, "What is 12*7?")
    assert run.status == "succeeded"
    result = next(e for e in events if e.type == "tool.result")
    assert "84" not in result.data["output"] and "REDACTED" in result.data["output"]
    second = str(fake_provider.requests[1]["json"]["messages"])
    assert "REDACTED" in second
    flagged = next(e for e in events if e.type == "moderation.flagged")
    assert flagged.data["stage"] == "tool_output"
