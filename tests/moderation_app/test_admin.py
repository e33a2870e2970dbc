"""The admin: policies with validated rules, the triage queue and its actions, the index."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent
from moderation.models import Flag, Policy, Rule

pytestmark = pytest.mark.django_db

QUEUE = "/admin/moderation/flag/"


@pytest.fixture
def staff(client: Client, bob: Any) -> Client:
    client.force_login(bob)
    return client


def inline_data(**rule: str | list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "from-admin",
        "description": "",
        "fail_mode": "closed",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-order": "1",
        "rules-0-name": "Order ids",
        "rules-0-kind": "regex",
        "rules-0-params": '{"pattern": "ORD-\\\\d{6}"}',
        "rules-0-stages": ["input", "output"],
        "rules-0-action": "flag",
        "rules-0-severity": "low",
        "rules-0-is_active": "on",
    }
    data.update({f"rules-0-{k}": v for k, v in rule.items()})
    return data


def test_a_policy_with_a_valid_rule_is_saved_from_the_admin(staff: Client) -> None:
    response = staff.post("/admin/moderation/policy/add/", inline_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = Rule.objects.get(policy__name="from-admin")
    assert rule.stages == ["input", "output"]
    assert rule.params == {"pattern": "ORD-\\d{6}"}


def test_a_bad_regex_in_the_rule_inline_is_a_form_error(staff: Client) -> None:
    # given a rule whose pattern RE2 cannot compile
    data = inline_data(params='{"pattern": "(unclosed"}')
    # when the policy is saved, then the form comes back with the engine's message
    response = staff.post("/admin/moderation/policy/add/", data)
    assert response.status_code == 200
    assert "invalid pattern" in response.content.decode()
    assert not Policy.objects.filter(name="from-admin").exists()


def test_a_rule_without_stages_is_a_form_error(staff: Client) -> None:
    response = staff.post("/admin/moderation/policy/add/", inline_data(stages=[]))
    assert response.status_code == 200
    assert not Policy.objects.filter(name="from-admin").exists()


def test_the_queue_lists_open_flags_first_with_run_links_and_filters(
    staff: Client, policy: Policy, make_flag: Callable[..., Flag]
) -> None:
    # given a newer dismissed flag and an older open one, for two agents and two rules
    old_open = make_flag(rule_name="OpenRule", rule=policy.rules.get(name="Competitors"))
    old_open.created_at = timezone.now() - timedelta(minutes=5)
    old_open.save()
    other = Agent.objects.create(
        slug="other", name="Other", provider=old_open.agent.provider, model_name="demo"
    )
    make_flag(
        rule_name="DoneRule",
        status="dismissed",
        agent=other,
        rule=policy.rules.get(name="Codename"),
    )
    # when the queue is shown
    body = staff.get(QUEUE).content.decode()
    # then the open flag comes first, each links to its run's admin page
    assert body.index("OpenRule") < body.index("DoneRule")
    assert f"/admin/agents/run/{old_open.run_id}/change/" in body
    # and every filter of the queue is offered
    for title in ("status", "severity", "stage", "kind", "agent", "rule", "age"):
        assert f"By {title}" in body


def test_the_age_filter_separates_recent_from_old_flags(
    staff: Client, make_flag: Callable[..., Flag]
) -> None:
    make_flag(rule_name="RecentRule")
    old = make_flag(rule_name="AncientRule")
    Flag.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    recent = staff.get(QUEUE, {"age": "day"}).content.decode()
    older = staff.get(QUEUE, {"age": "older"}).content.decode()
    assert "RecentRule" in recent and "AncientRule" not in recent
    assert "AncientRule" in older and "RecentRule" not in older


def test_a_bulk_action_records_the_reviewer_and_the_time(
    staff: Client, bob: Any, make_flag: Callable[..., Flag]
) -> None:
    # given two open flags
    flags = [make_flag(), make_flag()]
    # when both are escalated from the changelist
    response = staff.post(
        QUEUE,
        {"action": "mark_escalated", "_selected_action": [str(f.pk) for f in flags]},
    )
    # then both are escalated by bob, now
    assert response.status_code == 302
    for flag in flags:
        flag.refresh_from_db()
        assert flag.status == "escalated"
        assert flag.reviewer == bob
        assert timezone.now() - flag.reviewed_at < timedelta(minutes=1)  # type: ignore[operator]


def test_a_single_dismissal_can_allow_list_the_value(
    staff: Client, bob: Any, policy: Policy, make_flag: Callable[..., Flag]
) -> None:
    # given an open keyword flag that kept its (non-sensitive) value
    rule = policy.rules.get(name="Competitors")
    flag = make_flag(rule=rule, allow_candidate="acme")
    # when it is dismissed with allow-listing on its change page
    response = staff.post(
        f"{QUEUE}{flag.pk}/change/",
        {"status": "dismissed", "allow_list": "on", "note": "our partner"},
    )
    # then the decision is recorded and the rule allow-lists the value
    assert response.status_code == 302
    flag.refresh_from_db()
    assert (flag.status, flag.reviewer, flag.note) == ("dismissed", bob, "our partner")
    rule.refresh_from_db()
    assert rule.params["allow"] == ["acme"]


def test_allow_listing_a_sensitive_flag_is_a_form_error(
    staff: Client, make_flag: Callable[..., Flag]
) -> None:
    flag = make_flag(kind="email", allow_candidate="")
    response = staff.post(f"{QUEUE}{flag.pk}/change/", {"status": "dismissed", "allow_list": "on"})
    assert response.status_code == 200
    assert "cannot be allow-listed" in response.content.decode()
    flag.refresh_from_db()
    assert flag.status == "open"


def test_flags_cannot_be_added_by_hand(staff: Client) -> None:
    assert staff.get(f"{QUEUE}add/").status_code == 403


def test_the_index_shows_open_flag_counts(staff: Client, make_flag: Callable[..., Flag]) -> None:
    # given two open flags (one high) and a confirmed one
    make_flag(severity="high")
    make_flag(severity="low")
    make_flag(status="confirmed")
    # when the admin index is shown
    body = staff.get("/admin/").content.decode()
    # then it shows the open counts with links into the queue
    assert 'id="moderation-open-flags"' in body
    assert '<strong data-count="total">2</strong>' in body
    assert '<td data-count="high">1</td>' in body
    assert f"{QUEUE}?status__exact=open" in body


def test_the_index_hides_counts_from_staff_without_flag_permission(
    client: Client, make_user: Callable[..., Any], make_flag: Callable[..., Flag]
) -> None:
    viewer = make_user("dora")
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    make_flag()
    assert 'id="moderation-open-flags"' not in client.get("/admin/").content.decode()


def test_the_review_page_and_the_policy_page_render(
    staff: Client, policy: Policy, make_flag: Callable[..., Flag]
) -> None:
    flag = make_flag(excerpt="we beat acme daily")
    review = staff.get(f"{QUEUE}{flag.pk}/change/").content.decode()
    assert "we beat acme daily" in review
    assert 'name="allow_list"' in review
    page = staff.get(f"/admin/moderation/policy/{policy.pk}/change/").content.decode()
    assert "Competitors" in page
    assert 'name="rules-0-stages"' in page
