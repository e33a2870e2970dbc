"""Fixtures for the Django side of moderation: stored policies, runs, flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from moderation.models import Flag, Policy, Rule
from moderation.services import policy_cache_clear

ALL = ["input", "output", "tool_output"]


@pytest.fixture(autouse=True)
def _fresh_policy_cache() -> None:
    policy_cache_clear()


@pytest.fixture
def policy(db: None) -> Policy:
    """Redact PII everywhere, block a codename, flag prompt injection and a keyword."""
    policy = Policy.objects.create(name="strict", description="test policy")
    Rule.objects.create(policy=policy, order=1, name="PII", kind="pii", action="redact")
    Rule.objects.create(
        policy=policy,
        order=2,
        name="Codename",
        kind="keyword",
        params={"terms": ["project falcon"]},
        action="block",
        severity="high",
    )
    Rule.objects.create(
        policy=policy,
        order=3,
        name="Injection",
        kind="prompt_injection",
        stages=["input", "tool_output"],
        action="flag",
        severity="high",
    )
    Rule.objects.create(
        policy=policy,
        order=4,
        name="Competitors",
        kind="keyword",
        params={"terms": ["acme"]},
        action="flag",
        severity="low",
    )
    policy.refresh_from_db()
    return policy


@pytest.fixture
def run(demo_agent: Any, alice: Any) -> Any:
    from agents.models import Run

    return Run.objects.create(agent=demo_agent, owner=alice, input="hello")


@pytest.fixture
def make_flag(run: Any) -> Callable[..., Flag]:
    def make(**fields: Any) -> Flag:
        values: dict[str, Any] = {
            "run": run,
            "agent": run.agent,
            "rule_name": "Competitors",
            "stage": "input",
            "kind": "keyword",
            "action": "flag",
            "severity": "low",
            "excerpt": "we beat acme daily",
        }
        values.update(fields)
        return Flag.objects.create(**values)

    return make
