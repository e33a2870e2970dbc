"""Moderation policies over the REST API: the ordered rule list nested, rule params
validated by the engine with its messages, model permissions per persona."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.agents.test_api import assert_error

pytestmark = pytest.mark.django_db

POLICIES = "/api/v1/moderation/policies/"


def guardrails(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "guardrails",
        "description": "PII redacted, a codename blocked",
        "fail_mode": "closed",
        "rules": [
            {"name": "pii", "kind": "pii", "action": "redact"},
            {
                "name": "codename",
                "kind": "keyword",
                "params": {"terms": ["bluebird"]},
                "stages": ["output"],
                "action": "block",
                "severity": "high",
            },
        ],
    }
    return {**body, **overrides}


def test_bob_creates_a_policy_with_ordered_rules(bob_api: APIClient) -> None:
    response = bob_api.post(POLICIES, guardrails(), format="json")
    assert response.status_code == 201, response.content
    policy = response.json()
    assert [r["name"] for r in policy["rules"]] == ["pii", "codename"]
    assert policy["rules"][0]["stages"] == ["input", "output", "tool_output"]
    assert policy["rules"][1]["params"] == {"terms": ["bluebird"]}
    assert bob_api.get(f"{POLICIES}guardrails/").json()["rules"] == policy["rules"]
    # and the stored policy moderates as the engine compiles it
    check = bob_api.post(
        "/api/v1/moderation/check/",
        {"text": "the bluebird flies", "stage": "output", "policy": "guardrails"},
        format="json",
    ).json()
    assert check["blocked"]["rule"] == "codename"


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ({"kind": "regex", "params": {"pattern": "(unclosed"}}, "params", "invalid pattern"),
        ({"kind": "keyword", "params": {"terms": []}}, "params", "at least one"),
        ({"kind": "keyword", "params": {"terms": ["a"], "colour": 1}}, "params", "colour"),
        ({"kind": "pii", "params": {"types": ["passport"]}}, "params", "passport"),
        ({"kind": "pii", "stages": ["upload"]}, "stages", "subset"),
        ({"kind": "max_length", "params": {"max_chars": 10}, "action": "allow"}, "action", ""),
    ],
)
def test_a_bad_rule_is_a_400_with_the_engines_message(
    bob_api: APIClient, rule: dict[str, Any], field: str, message: str
) -> None:
    body = guardrails(rules=[{"name": "ok", "kind": "pii"}, {"name": "bad", **rule}])
    error = assert_error(bob_api.post(POLICIES, body, format="json"), 400, "invalid_request")
    [text] = error["details"]["rules"]["1"][field]
    assert message in text
    assert_error(bob_api.get(f"{POLICIES}guardrails/"), 404, "policy_not_found")


def test_an_unknown_kind_or_field_is_a_400_naming_it(bob_api: APIClient) -> None:
    body = guardrails(rules=[{"name": "x", "kind": "telepathy"}])
    error = assert_error(bob_api.post(POLICIES, body, format="json"), 400, "invalid_request")
    assert "kind" in error["details"]["rules"]["0"]
    body = guardrails(rules=[{"name": "x", "kind": "pii", "colour": "red"}])
    error = assert_error(bob_api.post(POLICIES, body, format="json"), 400, "invalid_request")
    assert "colour" in error["details"]["rules"]["0"]


def test_two_rules_with_one_name_are_a_400(bob_api: APIClient) -> None:
    body = guardrails(rules=[{"name": "x", "kind": "pii"}, {"name": "x", "kind": "secret"}])
    error = assert_error(bob_api.post(POLICIES, body, format="json"), 400, "invalid_request")
    assert "name" in error["details"]["rules"]["1"]


def test_patch_replaces_the_rules_keeping_those_named_again(bob_api: APIClient) -> None:
    from moderation.models import Rule

    bob_api.post(POLICIES, guardrails(), format="json")
    pii_id = Rule.objects.get(name="pii").pk
    rules = [
        {"name": "codename", "kind": "keyword", "params": {"terms": ["falcon"]}},
        {"name": "pii", "kind": "pii", "action": "flag"},
    ]
    response = bob_api.patch(f"{POLICIES}guardrails/", {"rules": rules}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(r["name"], r["action"]) for r in body["rules"]] == [
        ("codename", "flag"),
        ("pii", "flag"),
    ]
    assert Rule.objects.get(name="pii").pk == pii_id
    # and a patch without rules leaves them alone
    response = bob_api.patch(f"{POLICIES}guardrails/", {"fail_mode": "open"}, format="json")
    assert len(response.json()["rules"]) == 2


def test_a_policy_in_use_cannot_be_deleted(bob_api: APIClient, demo_agent: Any) -> None:
    from moderation.models import Policy

    bob_api.post(POLICIES, guardrails(), format="json")
    demo_agent.moderation_policy = Policy.objects.get(name="guardrails")
    demo_agent.save()
    error = assert_error(bob_api.delete(f"{POLICIES}guardrails/"), 409, "policy_in_use")
    assert error["details"] == {"agents": ["demo-assistant"]}
    demo_agent.moderation_policy = None
    demo_agent.save()
    assert bob_api.delete(f"{POLICIES}guardrails/").status_code == 204


def test_a_taken_name_is_a_400(bob_api: APIClient) -> None:
    bob_api.post(POLICIES, guardrails(), format="json")
    error = assert_error(
        bob_api.post(POLICIES, guardrails(), format="json"), 400, "invalid_request"
    )
    assert "name" in error["details"]


@pytest.mark.parametrize("persona", ["alice_api", "charlie_api", "dave_api"])
def test_users_without_policy_permissions_are_refused(
    request: pytest.FixtureRequest, persona: str, bob_api: APIClient
) -> None:
    # dave holds the agents app's permissions, none of moderation's
    bob_api.post(POLICIES, guardrails(), format="json")
    client: APIClient = request.getfixturevalue(persona)
    assert_error(client.get(POLICIES), 403, "permission_denied")
    assert_error(client.get(f"{POLICIES}guardrails/"), 403, "permission_denied")
    assert_error(
        client.post(POLICIES, guardrails(name="x"), format="json"), 403, "permission_denied"
    )
    response = client.patch(f"{POLICIES}guardrails/", {"fail_mode": "open"}, format="json")
    assert_error(response, 403, "permission_denied")
    assert_error(client.delete(f"{POLICIES}guardrails/"), 403, "permission_denied")


def test_a_policy_viewer_reads_but_does_not_write(make_operator: Any, bob_api: APIClient) -> None:
    from tests.conftest import token_client

    bob_api.post(POLICIES, guardrails(), format="json")
    client = token_client(make_operator("erin", "moderation.view_policy"))
    assert client.get(POLICIES).json()["count"] == 1
    response = client.patch(f"{POLICIES}guardrails/", {"fail_mode": "open"}, format="json")
    assert_error(response, 403, "permission_denied")
