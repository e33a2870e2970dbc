"""The admin pages an operator uses for providers, agents, prices and the cost ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from agents.models import ModelCall, PriceOverride

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_browser(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def test_the_agent_page_shows_tools_guardrails_and_limits(
    bob_browser: Client, demo_agent: Any
) -> None:
    page = bob_browser.get(f"/admin/agents/agent/{demo_agent.pk}/change/")
    assert page.status_code == 200
    for field in ("tool_config", "moderation_policy", "max_concurrent_runs", "monthly_budget"):
        assert field in page.content.decode()


def test_an_operator_adds_a_price_override(bob_browser: Client, demo_provider: Any) -> None:
    response = bob_browser.post(
        "/admin/agents/priceoverride/add/",
        {
            "model_name": "llama-3-70b",
            "provider": demo_provider.pk,
            "input_per_mtok_usd": "0.5",
            "output_per_mtok_usd": "1.5",
        },
    )
    assert response.status_code == 302
    override = PriceOverride.objects.get(model_name="llama-3-70b")
    assert override.output_per_mtok_usd == Decimal("1.5")


def test_the_cost_ledger_is_listed_and_read_only(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    from agents.services import run_create

    run, _ = run_create(agent=demo_agent, owner=alice, input="x", enqueue=False)
    call = ModelCall.objects.create(
        run=run,
        agent=demo_agent,
        model="gpt-4o",
        input_tokens=10,
        output_tokens=5,
        cost_usd=Decimal("0.0001"),
        price_source="genai_prices",
    )
    listing = bob_browser.get("/admin/agents/modelcall/")
    assert listing.status_code == 200 and "gpt-4o" in listing.content.decode()
    assert bob_browser.get("/admin/agents/modelcall/add/").status_code == 403
    change = bob_browser.post(f"/admin/agents/modelcall/{call.pk}/change/", {"model": "x"})
    assert change.status_code in (302, 403)
    call.refresh_from_db()
    assert call.model == "gpt-4o"


def test_outsiders_cannot_open_the_admin(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/agents/modelcall/").status_code == 302  # to the login page
