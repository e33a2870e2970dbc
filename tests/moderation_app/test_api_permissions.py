"""Who may triage over /api/v1/moderation/: model permissions on flags, rules and policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from moderation.models import Flag, Policy
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

FLAGS = "/api/v1/moderation/flags/"
CHECK = "/api/v1/moderation/check/"


def resolve(api: Any, flag: Flag, **body: Any) -> Any:
    return api.post(f"{FLAGS}{flag.pk}/resolve/", {"decision": "dismissed", **body}, format="json")


def test_staff_status_alone_does_not_open_the_queue(
    make_operator: Callable[..., Any], make_flag: Callable[..., Flag], policy: Policy
) -> None:
    api = token_client(make_operator("olga"))
    flag = make_flag()
    assert api.get(FLAGS).status_code == 403
    assert resolve(api, flag).status_code == 403
    assert api.post(CHECK, {"text": "x", "stage": "input"}, format="json").status_code == 403


def test_view_flag_reads_the_queue_and_change_flag_resolves(
    make_operator: Callable[..., Any], make_flag: Callable[..., Flag]
) -> None:
    # given a flag, a reader and a triager
    flag = make_flag()
    reader = token_client(make_operator("olga", "moderation.view_flag"))
    triager = token_client(make_operator("otto", "moderation.view_flag", "moderation.change_flag"))
    # when / then
    assert reader.get(FLAGS).json()["count"] == 1
    assert resolve(reader, flag).status_code == 403
    assert resolve(triager, flag).status_code == 200
    flag.refresh_from_db()
    assert flag.status == "dismissed"


def test_allow_listing_a_value_also_needs_change_rule(
    make_operator: Callable[..., Any], make_flag: Callable[..., Flag], policy: Policy
) -> None:
    # given a flag from a policy rule, and a triager who may not edit rules
    rule = policy.rules.get(name="Competitors")
    flag = make_flag(rule=rule, allow_candidate="acme")
    triager = token_client(make_operator("otto", "moderation.view_flag", "moderation.change_flag"))
    editor = token_client(
        make_operator(
            "olga", "moderation.view_flag", "moderation.change_flag", "moderation.change_rule"
        )
    )
    # when the triager allow-lists, it is refused and the flag stays open
    assert resolve(triager, flag, allow_list=True).status_code == 403
    flag.refresh_from_db()
    assert flag.status == "open"
    # and with change_rule it goes through
    assert resolve(editor, flag, allow_list=True).status_code == 200


def test_view_policy_allows_the_dry_run_check(
    make_operator: Callable[..., Any], policy: Policy
) -> None:
    api = token_client(make_operator("olga", "moderation.view_policy"))
    response = api.post(CHECK, {"text": "hi", "stage": "input", "policy": "strict"}, format="json")
    assert response.status_code == 200
