"""The agent page: overview, version history with diff and restore, the test run button."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from agents.agent_services import agent_save
from agents.models import Agent, ModelCall
from agents.services import run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_browser(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def test_the_agent_page_shows_runs_spend_against_budget_and_error_rate(
    bob_browser: Client, demo_agent: Agent, alice: Any
) -> None:
    # Given an agent with a budget, a succeeded and a failed run
    demo_agent.monthly_budget_usd = Decimal("1.00")
    demo_agent.save()
    ok, _ = run_create(agent=demo_agent, owner=alice, input="a", enqueue=False)
    bad, _ = run_create(agent=demo_agent, owner=alice, input="b", enqueue=False)
    type(ok).objects.filter(pk=ok.pk).update(status="succeeded")
    type(bad).objects.filter(pk=bad.pk).update(status="failed")
    ModelCall.objects.create(
        run=ok, agent=demo_agent, model="demo", cost_usd=Decimal("0.9"), price_source="override"
    )
    # When an operator opens its page
    body = bob_browser.get(f"/admin/agents/agent/{demo_agent.pk}/change/").content.decode()
    # Then it shows this month's spend with an amber bar, the error rate and the runs
    assert 'data-stat="month_spend">$0.9000<' in body
    assert 'data-level="amber"' in body
    assert 'data-stat="error_rate">50 %<' in body
    assert f"/admin/agents/run/{ok.pk}/change/" in body
    # And "Start a test run" sits in the submit bar, submitting the test-run form
    assert 'form="test-run-form"' in body and 'name="_save"' in body


def test_a_version_shows_its_diff_and_can_be_restored(
    bob_browser: Client, demo_agent: Agent, bob: Any
) -> None:
    # Given an agent saved twice with different instructions
    agent_save(agent=demo_agent, actor=bob)
    demo_agent.instructions = "Answer in French."
    agent_save(agent=demo_agent, actor=bob)
    numbers = list(demo_agent.versions.order_by("number").values_list("number", flat=True))
    first, last = numbers[0], numbers[-1]
    body = bob_browser.get(f"/admin/agents/agent/{demo_agent.pk}/change/").content.decode()
    assert "Answer in French." in body and f'data-restore="{first}"' in body
    # When the operator restores the first version
    response = bob_browser.post(f"/admin/agents/agent/{demo_agent.pk}/versions/{first}/restore/")
    # Then the agent runs as it did then, recorded as a new version
    assert response.status_code == 302
    demo_agent.refresh_from_db()
    assert demo_agent.instructions != "Answer in French."
    assert demo_agent.versions.order_by("-number").first().number == last + 1


def test_restoring_needs_the_change_permission(demo_agent: Agent, make_user: Any) -> None:
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client = Client()
    client.force_login(viewer)
    agent_save(agent=demo_agent, actor=None)
    number = demo_agent.versions.first().number
    response = client.post(f"/admin/agents/agent/{demo_agent.pk}/versions/{number}/restore/")
    assert response.status_code == 403


def test_tools_are_a_checklist_and_model_settings_have_fields(
    bob_browser: Client, demo_agent: Agent
) -> None:
    # Given the agent form
    url = f"/admin/agents/agent/{demo_agent.pk}/change/"
    body = bob_browser.get(url).content.decode()
    # Then every registry tool is a checkbox with its description
    from agents.tools import all_tools

    for name, spec in all_tools().items():
        assert f'value="{name}"' in body and spec.description[:30] in body
    assert 'name="temperature"' in body and "Model settings (advanced, JSON)" in body
    # When the operator ticks the calculator and sets a temperature
    data = {
        "slug": demo_agent.slug,
        "name": demo_agent.name,
        "provider": demo_agent.provider_id,
        "model_name": demo_agent.model_name,
        "tools": ["calculator"],
        "temperature": "0.3",
        "max_tokens": "",
        "tool_config": "{}",
        "model_settings": '{"presence_penalty": 0.1}',
        "max_requests": 20,
        "max_tool_calls": 20,
        "timeout_s": 300,
        "is_active": "on",
        "_save": "Save",
    }
    response = bob_browser.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    # Then the tools and the merged settings are stored
    demo_agent.refresh_from_db()
    assert demo_agent.tools == ["calculator"]
    assert demo_agent.model_settings == {"presence_penalty": 0.1, "temperature": 0.3}
