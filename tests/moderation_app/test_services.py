"""Compiling stored policies, recording flags and resolving them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.errors import ApplicationError
from moderation import services as moderation_services
from moderation.models import Flag, Policy, Rule
from moderation.services import (
    flag_record,
    flag_resolve,
    flags_record,
    flags_resolve,
    policies_warm,
    policy_compile,
)

pytestmark = pytest.mark.django_db


def test_a_compiled_policy_is_reused_until_a_rule_changes(policy: Policy) -> None:
    # given a compiled policy
    first = policy_compile(policy)
    # when it is compiled again unchanged, then the same instance comes back
    assert policy_compile(Policy.objects.get(pk=policy.pk)) is first
    # when a rule changes, then a fresh policy object is compiled
    Rule.objects.filter(policy=policy, name="Competitors").first().save()  # type: ignore[union-attr]
    assert policy_compile(Policy.objects.get(pk=policy.pk)) is not first


def test_warming_compiles_the_policies_of_active_agents_only(
    policy: Policy, demo_agent: Any
) -> None:
    # given one active agent on the policy and an inactive one on another policy
    idle = Policy.objects.create(name="idle")
    Rule.objects.create(policy=idle, order=1, name="PII", kind="pii", action="redact")
    demo_agent.moderation_policy = policy
    demo_agent.save()
    type(demo_agent).objects.create(
        slug="idle-agent",
        name="Idle",
        provider=demo_agent.provider,
        model_name=demo_agent.model_name,
        moderation_policy=idle,
        is_active=False,
    )
    # when a process warms up, then only the active agent's policy is compiled (and cached)
    assert policies_warm() == 1
    assert {key[0] for key in moderation_services._cache} == {policy.pk}


def test_known_secrets_are_part_of_the_cache_key(policy: Policy) -> None:
    plain = policy_compile(policy)
    with_secret = policy_compile(policy, known_secrets=["vault-value-123"])
    assert with_secret is not plain
    assert "[REDACTED:known_secret]" in with_secret.scan("key vault-value-123", "output").text
    assert "vault-value-123" in plain.scan("key vault-value-123", "output").text


def test_inactive_rules_are_not_compiled(policy: Policy) -> None:
    Rule.objects.filter(policy=policy, name="Competitors").update(is_active=False)
    policy.refresh_from_db()
    result = policy_compile(policy).scan("we beat acme", "input")
    assert result.findings == []


def test_flags_are_recorded_for_flag_and_block_findings_only(policy: Policy, run: Any) -> None:
    # given an input with an email (redact), a competitor (flag) and the codename (block)
    text = "Mail jane.doe@example.com about acme and project falcon"
    result = policy_compile(policy).scan(text, "input")
    assert {f.action for f in result.findings} == {"redact", "flag", "block"}
    # when the findings are recorded
    flags = flags_record(run_id=run.id, agent_id=run.agent_id, text=text, findings=result.findings)
    # then there is one flag each for the keyword and the block, linked to their rules
    assert sorted((f.rule_name, f.action) for f in flags) == [
        ("Codename", "block"),
        ("Competitors", "flag"),
    ]
    stored = Flag.objects.get(rule__name="Competitors")
    assert stored.status == Flag.Status.OPEN
    assert stored.agent_id == run.agent_id
    # and the excerpt hides the nearby email but shows the (non-sensitive) keyword
    assert "jane.doe" not in stored.excerpt
    assert "[REDACTED:email]" in stored.excerpt
    assert "acme" in stored.excerpt
    assert stored.allow_candidate == "acme"


def test_a_pii_flag_keeps_no_matched_value(run: Any) -> None:
    # given a policy that flags (not redacts) emails
    policy = Policy.objects.create(name="pii-flag")
    Rule.objects.create(policy=policy, name="Emails", kind="pii", params={"types": ["email"]})
    text = "write to jane.doe@example.com today"
    result = policy_compile(policy).scan(text, "input")
    # when the finding is recorded
    flag = flag_record(
        run_id=run.id,
        agent_id=run.agent_id,
        finding=result.findings[0],
        text=text,
        findings=result.findings,
    )
    # then neither the excerpt nor any other field holds the address
    assert "jane.doe" not in flag.excerpt
    assert "[REDACTED:email]" in flag.excerpt
    assert flag.allow_candidate == ""


def test_a_flag_outlives_its_deleted_rule(policy: Policy, run: Any) -> None:
    text = "acme again"
    result = policy_compile(policy).scan(text, "input")
    Rule.objects.filter(name="Competitors").delete()
    flags = flags_record(run_id=run.id, agent_id=run.agent_id, text=text, findings=result.findings)
    assert flags[0].rule_id is None
    assert flags[0].rule_name == "Competitors"


def test_resolving_records_the_reviewer_the_time_and_the_note(
    make_flag: Callable[..., Flag], bob: Any
) -> None:
    flag = make_flag()
    resolved = flag_resolve(flag=flag, decision="confirmed", note="real leak", reviewer=bob)
    resolved.refresh_from_db()
    assert resolved.status == "confirmed"
    assert resolved.reviewer == bob
    assert resolved.reviewed_at is not None
    assert resolved.note == "real leak"


def test_an_unknown_decision_is_refused(make_flag: Callable[..., Flag], bob: Any) -> None:
    with pytest.raises(ApplicationError) as caught:
        flag_resolve(flag=make_flag(), decision="open", reviewer=bob)
    assert caught.value.code == "invalid_decision"


def test_dismissing_with_allow_list_adds_the_value_to_the_rule(
    policy: Policy, run: Any, bob: Any
) -> None:
    # given two open flags for the same competitor name
    text = "Acme is fine, ACME is fine"
    result = policy_compile(policy).scan(text, "input")
    first, second = flags_record(
        run_id=run.id, agent_id=run.agent_id, text=text, findings=result.findings
    )
    # when the first is dismissed as a false positive with allow-listing
    flag_resolve(flag=first, decision="dismissed", reviewer=bob, allow_list_entry=True)
    # then the rule allow-lists the value and the sibling flag is dismissed as well
    rule = Rule.objects.get(name="Competitors")
    assert rule.params["allow"] == ["Acme"]
    second.refresh_from_db()
    assert second.status == "dismissed"
    assert second.reviewer == bob
    # and the recompiled policy no longer reports it, whatever the case
    policy.refresh_from_db()
    assert policy_compile(policy).scan("ACME corp", "input").findings == []


def test_allow_listing_is_refused_for_sensitive_kinds(
    make_flag: Callable[..., Flag], policy: Policy, bob: Any
) -> None:
    flag = make_flag(kind="email", rule=policy.rules.get(name="PII"), allow_candidate="")
    with pytest.raises(ApplicationError) as caught:
        flag_resolve(flag=flag, decision="dismissed", reviewer=bob, allow_list_entry=True)
    assert caught.value.code == "allow_list_unavailable"
    flag.refresh_from_db()
    assert flag.status == "open"


def test_allow_listing_needs_a_dismissal(make_flag: Callable[..., Flag], bob: Any) -> None:
    with pytest.raises(ApplicationError):
        flag_resolve(
            flag=make_flag(allow_candidate="acme"),
            decision="confirmed",
            reviewer=bob,
            allow_list_entry=True,
        )


def test_bulk_resolution_updates_every_selected_flag(
    make_flag: Callable[..., Flag], bob: Any
) -> None:
    flags = [make_flag() for _ in range(3)]
    count = flags_resolve(
        flag_ids=[f.pk for f in flags[:2]], decision="escalated", reviewer=bob, note="legal"
    )
    assert count == 2
    statuses = dict(Flag.objects.values_list("pk", "status"))
    assert [statuses[f.pk] for f in flags] == ["escalated", "escalated", "open"]
    assert Flag.objects.filter(reviewer=bob, note="legal").count() == 2
