"""Agents and their versions over the REST API: CRUD with the admin's validation,
model permissions per persona, versions stored on every change that alters a run."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.agents.test_api import assert_error

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


@pytest.fixture(autouse=True)
def _no_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)


def new_agent(**overrides: Any) -> dict[str, Any]:
    body = {
        "slug": "writer",
        "name": "Writer",
        "provider": "demo",
        "model_name": "demo",
        "instructions": "Be brief.",
        "tools": ["calculator"],
        "model_settings": {"temperature": 0.2},
        "max_requests": 5,
        "monthly_budget_usd": "10.00",
    }
    return {**body, **overrides}


def test_dave_creates_an_agent_with_every_admin_field(
    dave_api: APIClient, demo_provider: Any
) -> None:
    # given an operator with the agent permissions
    # when he creates an agent
    response = dave_api.post(AGENTS, new_agent(), format="json")
    # then it exists with version 1, named by the model's field names
    assert response.status_code == 201, response.content
    agent = response.json()
    assert agent["slug"] == "writer"
    assert agent["provider"] == "demo"
    assert agent["provider_kind"] == "demo"
    assert agent["instructions"] == "Be brief."
    assert agent["monthly_budget_usd"] == "10.00"
    assert agent["moderation_policy"] is None
    assert agent["version"] == 1
    versions = dave_api.get(f"{AGENTS}writer/versions/").json()["results"]
    assert [(v["number"], v["created_by"], v["note"]) for v in versions] == [(1, "dave", "created")]
    assert versions[0]["config"]["instructions"] == "Be brief."


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", ["calculator", "teleport"]),
        ("tools", "calculator"),
        ("model_settings", [1, 2]),
        ("tool_config", {"delegate": {"agents": []}}),
        ("max_requests", 0),
        ("timeout_s", 999_999),
        ("provider", "no-such-provider"),
        ("moderation_policy", "no-such-policy"),
        ("slug", "Not A Slug"),
        ("version", 7),
        ("colour", "blue"),
    ],
)
def test_an_invalid_field_is_a_400_naming_it(
    bob_api: APIClient, demo_provider: Any, field: str, value: Any
) -> None:
    response = bob_api.post(AGENTS, new_agent(**{field: value}), format="json")
    error = assert_error(response, 400, "invalid_request")
    assert field in error["details"]


def test_an_unknown_tool_is_named_with_the_known_ones(
    bob_api: APIClient, demo_provider: Any
) -> None:
    response = bob_api.post(AGENTS, new_agent(tools=["teleport"]), format="json")
    message = assert_error(response, 400, "invalid_request")["details"]["tools"][0]
    assert "teleport" in message and "calculator" in message


def test_a_taken_slug_is_a_400(bob_api: APIClient, demo_agent: Any) -> None:
    response = bob_api.post(AGENTS, new_agent(slug="demo-assistant"), format="json")
    assert "slug" in assert_error(response, 400, "invalid_request")["details"]


def test_a_change_to_the_instructions_stores_version_2_and_runs_use_it(
    dave_api: APIClient, alice_api: APIClient, demo_agent: Any
) -> None:
    # given an agent and a run of it at version 1
    first = alice_api.post(f"{AGENTS}demo-assistant/runs/", {"input": "hi"}, format="json").json()
    assert first["agent_version"] == 1
    # when an operator changes its instructions
    response = dave_api.patch(f"{AGENTS}demo-assistant/", {"instructions": "Rhyme."}, format="json")
    # then the agent is at version 2 and the next run records it
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    second = alice_api.post(f"{AGENTS}demo-assistant/runs/", {"input": "hi"}, format="json").json()
    assert second["agent_version"] == 2
    from agents.models import Run

    assert Run.objects.get(pk=second["id"]).agent_version.config["instructions"] == "Rhyme."
    assert Run.objects.get(pk=first["id"]).agent_version.number == 1


def test_a_change_of_name_stores_no_version(dave_api: APIClient, demo_agent: Any) -> None:
    response = dave_api.patch(f"{AGENTS}demo-assistant/", {"name": "Renamed"}, format="json")
    assert response.json()["name"] == "Renamed"
    assert response.json()["version"] == 1


def test_restoring_version_1_stores_a_new_version_equal_to_it(
    dave_api: APIClient, demo_agent: Any
) -> None:
    # given versions 1 and 2
    dave_api.patch(
        f"{AGENTS}demo-assistant/", {"instructions": "Rhyme.", "max_requests": 3}, format="json"
    )
    # when version 1 is restored
    response = dave_api.post(f"{AGENTS}demo-assistant/versions/1/restore/")
    # then version 3 has version 1's configuration and the agent runs with it
    assert response.status_code == 201, response.content
    restored = response.json()
    assert restored["number"] == 3
    assert restored["note"] == "restored version 1"
    v1 = dave_api.get(f"{AGENTS}demo-assistant/versions/1/").json()
    assert restored["config"] == v1["config"]
    agent = dave_api.get(f"{AGENTS}demo-assistant/").json()
    assert (agent["instructions"], agent["max_requests"], agent["version"]) == ("", 20, 3)


def test_an_unknown_version_is_a_404(dave_api: APIClient, demo_agent: Any) -> None:
    assert_error(dave_api.get(f"{AGENTS}demo-assistant/versions/9/"), 404, "version_not_found")
    response = dave_api.post(f"{AGENTS}demo-assistant/versions/9/restore/")
    assert_error(response, 404, "version_not_found")


def test_deleting_an_agent_without_runs_deletes_it(dave_api: APIClient, demo_agent: Any) -> None:
    assert dave_api.delete(f"{AGENTS}demo-assistant/").status_code == 204
    assert_error(dave_api.get(f"{AGENTS}demo-assistant/"), 404, "agent_not_found")


def test_deleting_an_agent_with_runs_deactivates_it(
    dave_api: APIClient, alice_api: APIClient, demo_agent: Any
) -> None:
    alice_api.post(f"{AGENTS}demo-assistant/runs/", {"input": "hi"}, format="json")
    response = dave_api.delete(f"{AGENTS}demo-assistant/")
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert dave_api.get(f"{AGENTS}demo-assistant/").json()["is_active"] is False
    # and a user who may only run agents no longer sees it
    assert_error(alice_api.get(f"{AGENTS}demo-assistant/"), 404, "agent_not_found")


def test_a_user_reads_active_agents_without_their_configuration(
    alice_api: APIClient, demo_agent: Any
) -> None:
    listed = alice_api.get(AGENTS).json()["results"]
    assert [a["slug"] for a in listed] == ["demo-assistant"]
    assert "instructions" not in listed[0]
    assert "instructions" not in alice_api.get(f"{AGENTS}demo-assistant/").json()


@pytest.mark.parametrize("persona", ["alice_api", "charlie_api"])
def test_users_without_agent_permissions_cannot_write(
    request: pytest.FixtureRequest, persona: str, demo_agent: Any
) -> None:
    client: APIClient = request.getfixturevalue(persona)
    assert_error(client.post(AGENTS, new_agent(), format="json"), 403, "permission_denied")
    response = client.patch(f"{AGENTS}demo-assistant/", {"name": "x"}, format="json")
    assert_error(response, 403, "permission_denied")
    assert_error(client.delete(f"{AGENTS}demo-assistant/"), 403, "permission_denied")
    assert_error(client.get(f"{AGENTS}demo-assistant/versions/"), 403, "permission_denied")
    response = client.post(f"{AGENTS}demo-assistant/versions/1/restore/")
    assert_error(response, 403, "permission_denied")


def test_staff_without_permissions_cannot_write(make_user: Any, demo_agent: Any) -> None:
    from tests.conftest import token_client

    erin = make_user("erin")
    erin.is_staff = True
    erin.save()
    client = token_client(erin)
    assert_error(client.post(AGENTS, new_agent(), format="json"), 403, "permission_denied")


def test_bob_the_superuser_may_do_everything(bob_api: APIClient, demo_provider: Any) -> None:
    assert bob_api.post(AGENTS, new_agent(), format="json").status_code == 201
    assert bob_api.patch(f"{AGENTS}writer/", {"tools": []}, format="json").status_code == 200
    assert bob_api.get(f"{AGENTS}writer/versions/2/").json()["config"]["tools"] == []
    assert bob_api.post(f"{AGENTS}writer/versions/1/restore/").status_code == 201
    assert bob_api.delete(f"{AGENTS}writer/").status_code == 204


def test_anonymous_requests_are_refused(demo_agent: Any) -> None:
    assert_error(APIClient().get(AGENTS), 401, "not_authenticated")
