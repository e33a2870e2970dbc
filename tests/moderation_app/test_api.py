"""REST: the triage queue, resolving flags and the dry-run check endpoint (bob, a superuser)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from moderation.models import Flag, Policy, Rule

pytestmark = pytest.mark.django_db

FLAGS = "/api/v1/moderation/flags/"
CHECK = "/api/v1/moderation/check/"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return body["error"]


def resolve_url(flag: Flag) -> str:
    return f"{FLAGS}{flag.pk}/resolve/"


def test_staff_list_the_queue_open_flags_first(
    bob_api: APIClient, make_flag: Callable[..., Flag]
) -> None:
    # given a dismissed flag and an older open one
    done = make_flag(status="dismissed")
    waiting = make_flag()
    Flag.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(hours=2))
    # when bob lists the queue
    body = bob_api.get(FLAGS).json()
    # then the open one comes first, with its links and without any matched value
    assert [f["id"] for f in body["results"]] == [waiting.pk, done.pk]
    first = body["results"][0]
    assert first["agent"] == "demo-assistant"
    assert first["links"]["admin"] == f"/admin/agents/run/{waiting.run_id}/change/"
    assert "allow_candidate" not in first


def test_the_queue_filters_like_the_admin(
    bob_api: APIClient, policy: Policy, make_flag: Callable[..., Flag]
) -> None:
    rule = policy.rules.get(name="Codename")
    high = make_flag(severity="high", stage="output", kind="regex", rule=rule)
    make_flag(severity="low")
    old = make_flag(severity="low")
    Flag.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))

    def ids(**query: Any) -> list[int]:
        response = bob_api.get(FLAGS, query)
        assert response.status_code == 200, response.content
        return [f["id"] for f in response.json()["results"]]

    assert ids(severity="high") == [high.pk]
    assert ids(stage="output", kind="regex") == [high.pk]
    assert ids(rule=rule.pk) == [high.pk]
    assert ids(age="older") == [old.pk]
    assert len(ids(agent="demo-assistant", status="open", age="week")) == 2
    assert ids(agent="nobody") == []


def test_a_bad_filter_value_is_a_400(bob_api: APIClient, db: None) -> None:
    error = assert_error(bob_api.get(FLAGS, {"severity": "extreme"}), 400, "invalid_request")
    assert "severity" in error["details"]
    assert_error(bob_api.get(FLAGS, {"colour": "red"}), 400, "invalid_request")


def test_staff_resolve_a_flag(bob_api: APIClient, make_flag: Callable[..., Flag]) -> None:
    flag = make_flag()
    response = bob_api.post(
        resolve_url(flag), {"decision": "confirmed", "note": "seen it"}, format="json"
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["status"], data["reviewer"], data["note"]) == ("confirmed", "bob", "seen it")
    assert data["reviewed_at"]


def test_resolving_with_allow_list_updates_the_rule(
    bob_api: APIClient, policy: Policy, make_flag: Callable[..., Flag]
) -> None:
    rule = policy.rules.get(name="Competitors")
    flag = make_flag(rule=rule, allow_candidate="acme")
    assert bob_api.get(FLAGS).json()["results"][0]["allow_listable"] is True
    response = bob_api.post(
        resolve_url(flag), {"decision": "dismissed", "allow_list": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert Rule.objects.get(pk=rule.pk).params["allow"] == ["acme"]


def test_allow_listing_a_sensitive_flag_is_a_409(
    bob_api: APIClient, make_flag: Callable[..., Flag]
) -> None:
    flag = make_flag(kind="iban")
    response = bob_api.post(
        resolve_url(flag), {"decision": "dismissed", "allow_list": True}, format="json"
    )
    assert_error(response, 409, "allow_list_unavailable")


def test_resolve_errors_have_the_api_shape(
    bob_api: APIClient, make_flag: Callable[..., Flag]
) -> None:
    flag = make_flag()
    assert_error(
        bob_api.post(resolve_url(flag), {"decision": "maybe"}, format="json"),
        400,
        "invalid_request",
    )
    assert_error(bob_api.post(resolve_url(flag), {}, format="json"), 400, "invalid_request")
    assert_error(
        bob_api.post(resolve_url(flag), {"decision": "dismissed", "x": 1}, format="json"),
        400,
        "invalid_request",
    )
    assert_error(
        bob_api.post(f"{FLAGS}999999/resolve/", {"decision": "dismissed"}, format="json"),
        404,
        "not_found",
    )


@pytest.mark.parametrize("persona", ["alice_api", "charlie_api"])
def test_non_staff_cannot_use_the_moderation_api(
    persona: str, request: pytest.FixtureRequest, make_flag: Callable[..., Flag]
) -> None:
    # given a flag on alice's own run
    flag = make_flag()
    api: APIClient = request.getfixturevalue(persona)
    # when a non-staff user calls any moderation endpoint, then it is refused
    assert_error(api.get(FLAGS), 403, "permission_denied")
    assert_error(
        api.post(resolve_url(flag), {"decision": "dismissed"}, format="json"),
        403,
        "permission_denied",
    )
    assert_error(
        api.post(CHECK, {"text": "x", "stage": "input", "policy": "strict"}, format="json"),
        403,
        "permission_denied",
    )
    flag.refresh_from_db()
    assert flag.status == "open"


def test_anonymous_callers_are_refused(client: Any, db: None) -> None:
    assert client.get(FLAGS).status_code in (401, 403)


def test_check_with_a_stored_policy_by_name(bob_api: APIClient, policy: Policy) -> None:
    # given a text with an email and a competitor
    text = "Ask jane.doe@example.com about acme"
    # when it is checked against the stored policy by name
    response = bob_api.post(
        CHECK, {"text": text, "stage": "input", "policy": "strict"}, format="json"
    )
    # then the findings name rules and offsets, and nothing in the response holds the address
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["text"] == "Ask [REDACTED:email] about acme"
    assert body["blocked"] is None
    assert [(f["rule"], f["kind"], f["action"]) for f in body["findings"]] == [
        ("PII", "email", "redact"),
        ("Competitors", "keyword", "flag"),
    ]
    assert body["findings"][0]["start"] == 4
    assert "jane.doe" not in json.dumps(body)


def test_check_with_a_policy_id_reports_the_block(bob_api: APIClient, policy: Policy) -> None:
    response = bob_api.post(
        CHECK,
        {"text": "PROJECT FALCON ahead", "stage": "output", "policy": policy.pk},
        format="json",
    )
    body = response.json()
    assert body["blocked"]["rule"] == "Codename"
    assert body["blocked"]["excerpt"] == "PROJECT FALCON ahead"


def test_check_with_ad_hoc_rules(bob_api: APIClient, db: None) -> None:
    rules = [
        {
            "name": "Orders",
            "kind": "regex",
            "params": {"pattern": r"ORD-\d{4}"},
            "action": "redact",
        },
        {"kind": "keyword", "params": {"terms": ["refund"]}},
    ]
    response = bob_api.post(
        CHECK, {"text": "refund ORD-1234 now", "stage": "input", "rules": rules}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["text"] == "refund [REDACTED:regex] now"
    assert [(f["rule"], f["action"]) for f in body["findings"]] == [
        ("rule 2", "flag"),
        ("Orders", "redact"),
    ]


def test_bad_ad_hoc_rules_are_a_400_naming_each_rule(bob_api: APIClient, db: None) -> None:
    rules = [
        {"kind": "regex", "params": {"pattern": "(a)\\1"}},
        {"kind": "keyword", "params": {"terms": []}},
        {"kind": "keyword", "params": {"terms": ["ok"]}},
        {"kind": "telepathy"},
        {"kind": "keyword", "params": {"terms": ["x"]}, "stages": ["lunch"]},
        "not a rule",
    ]
    response = bob_api.post(CHECK, {"text": "x", "stage": "input", "rules": rules}, format="json")
    error = assert_error(response, 400, "invalid_rules")
    messages = error["details"]["rules"]
    assert sorted(messages) == ["0", "1", "3", "4", "5"]
    assert "invalid pattern" in messages["0"]
    assert "telepathy" in messages["3"]
    assert "stages" in messages["4"]


@pytest.mark.parametrize(
    "body",
    [
        {"text": "x", "stage": "input"},
        {"text": "x", "stage": "input", "policy": "strict", "rules": []},
        {"text": "x", "stage": "lunch", "policy": "strict"},
        {"text": 5, "stage": "input", "policy": "strict"},
        {"text": "x", "stage": "input", "policy": True},
        {"text": "x", "stage": "input", "policy": "strict", "extra": 1},
        {"text": "x", "stage": "input", "rules": []},
    ],
)
def test_malformed_check_requests_are_400s(
    bob_api: APIClient, policy: Policy, body: dict[str, Any]
) -> None:
    response = bob_api.post(CHECK, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {"invalid_request", "invalid_rules"}


def test_an_unknown_policy_is_a_404(bob_api: APIClient, db: None) -> None:
    response = bob_api.post(CHECK, {"text": "x", "stage": "input", "policy": "nope"}, format="json")
    assert_error(response, 404, "policy_not_found")
