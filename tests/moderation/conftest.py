"""Shared fixtures for the moderation engine tests (plain pytest, no Django)."""

from __future__ import annotations

import pytest

from moderation.engine import Policy, default_policy_rules

from . import samples


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    """The default policy with one known secret value."""
    return Policy(default_policy_rules(), known_secrets=[samples.KNOWN_SECRET])


@pytest.fixture(scope="session")
def rich_policy() -> Policy:
    """Default rules plus keyword, regex and allow rules."""
    return samples.rich_policy()
