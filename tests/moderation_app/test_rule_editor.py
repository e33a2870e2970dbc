"""The rule editor: per-kind fields instead of JSON, the pattern test, rule ordering."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from moderation.models import Policy, Rule

pytestmark = pytest.mark.django_db

ADD = "/admin/moderation/policy/add/"
TEST = "/admin/moderation/policy/pattern-test/"


@pytest.fixture
def staff(client: Client, bob: Any) -> Client:
    client.force_login(bob)
    return client


def policy_data(rules: list[dict[str, Any]], *, initial: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "edited",
        "description": "",
        "fail_mode": "closed",
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": str(initial),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    for index, rule in enumerate(rules):
        fields = {
            "name": f"rule {index}",
            "stages": ["input", "output"],
            "action": "flag",
            "severity": "medium",
            "is_active": "on",
            "params": "{}",
            **rule,
        }
        data.update({f"rules-{index}-{k}": v for k, v in fields.items()})
    return data


def rule_form(client: Client, policy: Policy, index: int = 0) -> Any:
    response = client.get(f"/admin/moderation/policy/{policy.pk}/change/")
    assert response.status_code == 200
    return response.context["inline_admin_formsets"][0].formset.forms[index]


ROUND_TRIPS = [
    (
        {
            "kind": "keyword",
            "keyword_terms": "acme\nproject falcon\n",
            "keyword_mode": "substring",
            "allow": "acme corp",
        },
        {"terms": ["acme", "project falcon"], "mode": "substring", "allow": ["acme corp"]},
        {
            "keyword_terms": "acme\nproject falcon",
            "allow": "acme corp",
            "keyword_mode": "substring",
        },
    ),
    (
        {
            "kind": "regex",
            "regex_pattern": r"ORD-\d{6}",
            "regex_case_sensitive": "on",
            "regex_max_match_length": "64",
        },
        {"pattern": r"ORD-\d{6}", "case_sensitive": True, "max_match_length": 64},
        {"regex_pattern": r"ORD-\d{6}", "regex_case_sensitive": True},
    ),
    (
        {"kind": "pii", "pii_types": ["email", "iban"]},
        {"types": ["email", "iban"]},
        {"pii_types": ["email", "iban"]},
    ),
    (
        {"kind": "secret", "secret_types": ["jwt"]},  # "known" unchecked
        {"types": ["jwt"], "known": False},
        {"secret_types": ["jwt"], "secret_known": False},
    ),
    (
        {
            "kind": "prompt_injection",
            "injection_languages": ["en", "de"],
            "injection_threshold": "2.5",
            "injection_layers": ["phrases"],
        },
        {"languages": ["en", "de"], "threshold": 2.5, "layers": ["phrases"]},
        {"injection_languages": ["en", "de"], "injection_threshold": 2.5},
    ),
    (
        {"kind": "max_length", "max_chars": "5000", "action": "block"},
        {"max_chars": 5000},
        {"max_chars": 5000},
    ),
    (
        {
            "kind": "external",
            "external_base_url": "https://moderation.example.com/v1",
            "external_model": "mod-1",
            "external_timeout_s": "3",
            "external_fail_mode": "open",
            "external_categories": "hate\nviolence",
            "external_threshold": "0.7",
            "external_api_key_secret": "moderation-key",
        },
        {
            "base_url": "https://moderation.example.com/v1",
            "model": "mod-1",
            "timeout_s": 3.0,
            "fail_mode": "open",
            "categories": ["hate", "violence"],
            "threshold": 0.7,
            "api_key_secret": "moderation-key",
        },
        {"external_categories": "hate\nviolence", "external_fail_mode": "open"},
    ),
]


@pytest.mark.parametrize(("fields", "params", "shown"), ROUND_TRIPS, ids=lambda v: "")
def test_each_kind_is_edited_with_its_own_fields_and_shown_again(
    staff: Client, fields: dict[str, Any], params: dict[str, Any], shown: dict[str, Any]
) -> None:
    # given the fields of one kind, with the JSON left as it was
    # when the policy is saved
    response = staff.post(ADD, policy_data([fields]))
    # then the rule holds exactly those parameters
    assert response.status_code == 302, response.content.decode()[-3000:]
    rule = Rule.objects.get(policy__name="edited")
    assert rule.params == params
    # and its page shows them in the same fields again
    form = rule_form(staff, rule.policy)
    for name, value in shown.items():
        assert form[name].value() == value, name
    # and saving the page unchanged keeps them
    again = {**{k: v for k, v in fields.items()}, "id": str(rule.pk), "order": "0"}
    again["params"] = form["params"].value()
    data = policy_data([again], initial=1)
    response = staff.post(f"/admin/moderation/policy/{rule.policy_id}/change/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    rule.refresh_from_db()
    assert rule.params == params


def test_edited_json_wins_over_the_fields(staff: Client) -> None:
    fields = {"kind": "keyword", "keyword_terms": "ignored", "params": '{"terms": ["from-json"]}'}
    response = staff.post(ADD, policy_data([fields]))
    assert response.status_code == 302
    assert Rule.objects.get(policy__name="edited").params == {"terms": ["from-json"]}


def test_an_invalid_regex_is_the_engines_message_on_the_pattern_field(staff: Client) -> None:
    # given a pattern RE2 cannot compile
    data = policy_data([{"kind": "regex", "regex_pattern": "(unclosed"}])
    # when the policy is saved
    response = staff.post(ADD, data)
    # then nothing is saved and the engine's message sits on the pattern field
    assert response.status_code == 200
    assert not Policy.objects.filter(name="edited").exists()
    form = response.context["inline_admin_formsets"][0].formset.forms[0]
    assert form.errors["regex_pattern"] == ["regex rule: invalid pattern: missing ): (unclosed"]
    assert "params" not in form.errors


def test_an_empty_terms_list_is_an_error_on_the_terms_field(staff: Client) -> None:
    response = staff.post(ADD, policy_data([{"kind": "keyword", "keyword_terms": "\n \n"}]))
    form = response.context["inline_admin_formsets"][0].formset.forms[0]
    assert "must contain at least one" in form.errors["keyword_terms"][0]


def test_only_the_selected_kinds_fields_are_used(staff: Client) -> None:
    # given a PII rule whose page also posted a leftover regex pattern (no JavaScript)
    fields = {"kind": "pii", "pii_types": ["email"], "regex_pattern": "(broken"}
    response = staff.post(ADD, policy_data([fields]))
    # then the pattern is ignored
    assert response.status_code == 302
    assert Rule.objects.get(policy__name="edited").params == {"types": ["email"]}


def test_the_test_box_shows_the_matches_on_save(staff: Client) -> None:
    fields = {
        "kind": "regex",
        "regex_pattern": r"ORD-\d{3}",
        "regex_test": "see ORD-123 and ORD-456",
    }
    response = staff.post(ADD, policy_data([fields]), follow=True)
    body = response.content.decode()
    assert "2 match(es) in the test text: «ORD-123», «ORD-456»" in body


def test_the_pattern_test_view_returns_the_engines_matches(staff: Client) -> None:
    response = staff.post(TEST, {"pattern": r"ord-\d+", "text": "a ORD-12 b ord-3"})
    assert response.status_code == 200
    assert response.json() == {
        "matches": [
            {"start": 2, "end": 8, "text": "ORD-12"},
            {"start": 11, "end": 16, "text": "ord-3"},
        ]
    }


def test_the_pattern_test_view_returns_the_engines_error(staff: Client) -> None:
    response = staff.post(TEST, {"pattern": "a**", "text": "aaa"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("regex rule: invalid pattern:")


def test_the_pattern_test_needs_the_policy_permissions(
    client: Client, make_operator: Callable[..., Any]
) -> None:
    client.force_login(make_operator("viewer", "moderation.view_policy"))
    assert client.post(TEST, {"pattern": "a", "text": "a"}).status_code == 403


def test_colliding_orders_become_sequential_and_blank_goes_last(staff: Client) -> None:
    # given a policy whose three rules all have order 0
    policy = Policy.objects.create(name="edited")
    rules = [
        Rule.objects.create(policy=policy, name=f"r{i}", kind="pii", order=0) for i in range(3)
    ]
    # when it is saved with the second typed as 0 too and a new rule without an order
    posted = [
        {"id": str(r.pk), "order": "0", "kind": "pii", "name": r.name, "pii_types": ["email"]}
        for r in rules
    ]
    posted.append({"order": "", "kind": "pii", "name": "new", "pii_types": ["email"]})
    data = policy_data(posted, initial=3)
    response = staff.post(f"/admin/moderation/policy/{policy.pk}/change/", data)
    # then the orders are sequential, keeping the order they had, the new rule last
    assert response.status_code == 302, response.content.decode()[-3000:]
    names = list(policy.rules.order_by("order").values_list("name", "order"))
    assert names == [("r0", 0), ("r1", 1), ("r2", 2), ("new", 3)]


def test_typed_orders_that_do_not_collide_are_kept(staff: Client) -> None:
    posted = [
        {"order": "20", "kind": "pii", "name": "second", "pii_types": ["email"]},
        {"order": "10", "kind": "pii", "name": "first", "pii_types": ["email"]},
    ]
    response = staff.post(ADD, policy_data(posted))
    assert response.status_code == 302
    rules = Rule.objects.filter(policy__name="edited").order_by("order")
    assert [(r.name, r.order) for r in rules] == [("first", 10), ("second", 20)]


def test_the_rules_can_be_dragged_into_order(staff: Client) -> None:
    policy = Policy.objects.create(name="edited")
    Rule.objects.create(policy=policy, name="r", kind="pii", order=0)
    body = staff.get(f"/admin/moderation/policy/{policy.pk}/change/").content.decode()
    assert 'data-ordering-field="order"' in body
    assert "moderation/rule_editor.js" in body


def test_the_migration_makes_colliding_orders_sequential() -> None:
    # given a policy whose rules all have order 0 and one whose orders are distinct
    from importlib import import_module

    from django.apps import apps

    clash = Policy.objects.create(name="clash")
    fine = Policy.objects.create(name="fine")
    for i in range(3):
        Rule.objects.create(policy=clash, name=f"c{i}", kind="pii", order=0)
        Rule.objects.create(policy=fine, name=f"f{i}", kind="pii", order=10 * (3 - i))
    # when the data migration runs
    import_module("moderation.migrations.0002_rule_orders_sequential").renumber(apps, None)
    # then only the colliding policy is renumbered, in its old order
    assert list(clash.rules.order_by("order").values_list("name", "order")) == [
        ("c0", 0),
        ("c1", 1),
        ("c2", 2),
    ]
    assert list(fine.rules.order_by("order").values_list("order", flat=True)) == [10, 20, 30]
