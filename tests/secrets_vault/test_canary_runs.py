"""The vault canary, followed through a real run: the provider key reaches the provider
and nowhere else (Celery message, events, run columns, ledger, logs)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from celery.signals import before_task_publish
from django.core import serializers

from agents.models import Agent, ModelCall, Provider, Run, RunEvent
from agents.runtime import execute_run
from agents.services import run_create
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CANARY = "sk-canary-run-path-5b1e9f0a7c"


def setup_agent(server: FakeProviderServer) -> Agent:
    from secrets_vault.services import secret_create

    secret = secret_create(name="canary-provider-key", value=CANARY)
    provider = Provider.objects.create(
        name="canary", kind="openai", base_url=server.base_url, api_key=secret
    )
    return Agent.objects.create(
        slug="canary-agent",
        name="Canary",
        provider=provider,
        model_name="gpt-4o",
        tools=["calculator"],
    )


async def test_the_provider_key_goes_to_the_provider_and_nowhere_else(
    fake_provider: FakeProviderServer,
    alice: Any,
    settings: Any,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings.RUN_EXECUTOR = "celery"
    settings.CELERY_TASK_DEFAULT_QUEUE = "canary-never-consumed"
    published: list[str] = []

    def capture(body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        published.append(repr(body) + repr(headers))

    before_task_publish.connect(capture)
    try:
        agent = await sync_to_async(setup_agent)(fake_provider)
        fake_provider.script(
            Scenario(kind="tool_call", tool_name="calculator", tool_args={"expression": "1+1"}),
            Scenario(text="Two it is"),
        )
        run, _ = await sync_to_async(run_create)(agent=agent, owner=alice, input="1+1?")
        await execute_run(run.id)
    finally:
        before_task_publish.disconnect(capture)
        import redis

        redis.Redis.from_url(redis_url).delete("canary-never-consumed")
    # The key reached the provider ...
    assert all(r["headers"]["authorization"] == f"Bearer {CANARY}" for r in fake_provider.requests)
    # ... and nothing else: the Celery message carries the run id only
    assert published and all(CANARY not in message for message in published)
    assert all(str(run.id) in message for message in published)
    run = await Run.objects.aget(pk=run.id)
    assert run.status == "succeeded"
    rows = await sync_to_async(
        lambda: serializers.serialize(
            "json",
            [
                *Run.objects.filter(pk=run.id),
                *RunEvent.objects.filter(run=run),
                *ModelCall.objects.filter(run=run),
            ],
        )
    )()
    assert CANARY not in rows
    assert CANARY not in json.dumps(run.config)
    assert CANARY not in caplog.text
