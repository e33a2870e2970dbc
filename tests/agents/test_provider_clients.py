"""Model clients are shared per provider and key on a loop, and rebuilt when either changes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents.runtime import providers
from agents.runtime.providers import build_model
from tests.agents.test_runtime import make_agent, run_to_end
from tests.fakes.provider_server import FakeProviderServer


def config(base_url: str = "http://127.0.0.1:9/v1", **provider: Any) -> dict[str, Any]:
    return {
        "model_name": "gpt-4o",
        "provider": {"id": 7, "kind": "openai", "base_url": base_url, "timeout_s": 5, **provider},
    }


@pytest.mark.asyncio
async def test_runs_on_one_loop_share_the_client_of_their_provider_and_key() -> None:
    # Given one provider configuration and key
    first = build_model(config(), api_key="sk-one")
    # When another run of it builds its model on the same loop
    second = build_model(config(), api_key="sk-one")
    # Then it gets the same model, and so the same HTTP client and TLS context
    assert second is first
    assert build_model(config(), api_key="sk-one").client is first.client


@pytest.mark.asyncio
async def test_a_new_key_or_changed_provider_settings_rebuild_the_client() -> None:
    first = build_model(config(), api_key="sk-one")
    rotated = build_model(config(), api_key="sk-two")
    assert rotated is not first
    assert build_model(config(), api_key="sk-two") is rotated  # the new one is kept
    moved = build_model(config(base_url="http://127.0.0.1:10/v1"), api_key="sk-two")
    assert moved is not rotated
    assert build_model(config(timeout_s=9), api_key="sk-two") is not moved


def test_another_loop_gets_its_own_client() -> None:
    async def build() -> Any:
        return build_model(config(), api_key="sk-one")

    assert asyncio.run(build()) is not asyncio.run(build())
    assert build_model(config(), api_key="sk-one") is not build_model(config(), api_key="sk-one")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_consecutive_runs_reuse_the_model_they_built_first(
    fake_provider: FakeProviderServer, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []
    new_model = providers._new_model

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(new_model(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(providers, "_new_model", counting)
    agent = await sync_to_async(make_agent)(fake_provider)
    for _ in range(3):
        assert (await run_to_end(agent, alice)).status == "succeeded"
    assert len(built) == 1 and len(fake_provider.requests) == 3
    from django.db import connections

    await sync_to_async(connections.close_all)()
