"""The admin's agent versions: saved through the same service as the API, a history page
with the diff of two versions, and a restore action behind the change permission."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def change_data(agent: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "slug": agent.slug,
        "name": agent.name,
        "description": "",
        "is_active": "on",
        "provider": agent.provider_id,
        "model_name": agent.model_name,
        "instructions": agent.instructions,
        "tools": ["calculator", "current_time"],  # the checklist's boxes
        "tool_config": "{}",
        "model_settings": "{}",
        "moderation_policy": "",
        "max_requests": 20,
        "max_tool_calls": 20,
        "timeout_s": 300,
    }
    return {**data, **overrides}


def test_saving_in_the_admin_stores_a_version_and_the_history_shows_the_diff(
    client: Client, bob: Any, demo_agent: Any
) -> None:
    # given an agent edited in the admin
    client.force_login(bob)
    url = f"/admin/agents/agent/{demo_agent.pk}/change/"
    response = client.post(url, change_data(demo_agent, instructions="Rhyme."))
    assert response.status_code == 302, response.content.decode()[:2000]
    # then version 1 (as it was) and version 2 (as it is) are stored
    assert list(demo_agent.versions.values_list("number", "created_by__username")) == [
        (2, "bob"),
        (1, None),
    ]
    # and the history page diffs them
    page = client.get(f"/admin/agents/agent/{demo_agent.pk}/versions/").content.decode()
    assert 'data-field="instructions"' in page
    assert "Rhyme." in page
    assert 'data-field="tools"' not in page


def test_restore_in_the_admin_makes_a_new_version(
    client: Client, bob: Any, demo_agent: Any
) -> None:
    client.force_login(bob)
    client.post(
        f"/admin/agents/agent/{demo_agent.pk}/change/", change_data(demo_agent, max_requests=3)
    )
    response = client.post(f"/admin/agents/agent/{demo_agent.pk}/versions/1/restore/", follow=True)
    assert "Restored version 1 as version 3." in response.content.decode()
    demo_agent.refresh_from_db()
    assert (demo_agent.version, demo_agent.max_requests) == (3, 20)


def test_restore_needs_the_change_permission(
    client: Client, make_operator: Any, demo_agent: Any
) -> None:
    client.force_login(make_operator("erin", "agents.view_agent"))
    assert client.get(f"/admin/agents/agent/{demo_agent.pk}/versions/").status_code == 200
    response = client.post(f"/admin/agents/agent/{demo_agent.pk}/versions/1/restore/")
    assert response.status_code == 403
