"""Stored rules are validated by the engine before they can break a run."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from moderation.models import Policy, Rule

pytestmark = pytest.mark.django_db


def rule(policy: Policy, **fields: object) -> Rule:
    values: dict[str, object] = {"name": "r", "kind": "keyword", "params": {"terms": ["x"]}}
    values.update(fields)
    return Rule(policy=policy, **values)


def errors_of(candidate: Rule) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        candidate.full_clean()
    return caught.value.message_dict


def test_a_regex_re2_rejects_is_an_error_on_params(policy: Policy) -> None:
    # given a rule whose pattern uses a backreference (not RE2)
    candidate = rule(policy, kind="regex", params={"pattern": r"(a)\1"})
    # when it is validated, then the error names the parameters, with the engine's message
    errors = errors_of(candidate)
    assert list(errors) == ["params"]
    assert "invalid pattern" in errors["params"][0]


def test_an_empty_keyword_list_is_an_error_on_params(policy: Policy) -> None:
    errors = errors_of(rule(policy, params={"terms": ["  "]}))
    assert "at least one non-empty string" in errors["params"][0]


def test_a_regex_that_can_match_empty_text_is_refused(policy: Policy) -> None:
    errors = errors_of(rule(policy, kind="regex", params={"pattern": "a*"}))
    assert "empty text" in errors["params"][0]


def test_stages_must_be_a_non_empty_subset_of_the_three_stages(policy: Policy) -> None:
    assert "stages" in errors_of(rule(policy, stages=[]))
    assert "stages" in errors_of(rule(policy, stages=["input", "prompt"]))
    assert "stages" in errors_of(rule(policy, stages="input"))


def test_a_max_length_rule_cannot_allow_list(policy: Policy) -> None:
    errors = errors_of(rule(policy, kind="max_length", params={"max_chars": 5}, action="allow"))
    assert "action" in errors


def test_params_must_be_an_object(policy: Policy) -> None:
    assert "params" in errors_of(rule(policy, params=["x"]))


def test_a_valid_rule_becomes_an_engine_spec_keyed_by_its_primary_key(policy: Policy) -> None:
    # given a valid regex rule
    candidate = rule(policy, kind="regex", params={"pattern": r"ORD-\d{4}"}, stages=["output"])
    # when it is validated and saved
    candidate.full_clean()
    candidate.save()
    # then its spec carries the row's id and the stages as a set
    spec = candidate.to_spec()
    assert spec.id == str(candidate.pk)
    assert spec.stages == frozenset({"output"})
    assert spec.kind == "regex"


def test_changing_a_rule_moves_its_policy_updated_at(policy: Policy) -> None:
    # given a policy with rules
    before = policy.updated_at
    # when one rule changes, then the policy's timestamp moves (compiled policies are keyed by it)
    changed = policy.rules.first()
    assert changed is not None
    changed.is_active = False
    changed.save()
    policy.refresh_from_db()
    assert policy.updated_at > before
    # and a deleted rule moves it too
    moved = policy.updated_at
    changed.delete()
    policy.refresh_from_db()
    assert policy.updated_at > moved
