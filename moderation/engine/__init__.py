"""Pure-Python moderation engine for Switchyard (no Django imports).

Public API: ``RuleSpec``, ``Finding``, ``ScanResult``, ``Policy``, ``StreamModerator``,
``excerpt``, ``validate_params``, ``RuleParamsError`` and ``default_policy_rules``.
See docs/moderation.md.
"""

from __future__ import annotations

from .params import validate_params, validate_rule
from .policy import Policy, StreamModerator, default_policy_rules, excerpt
from .types import (
    ACTIONS,
    PII_TYPES,
    RULE_KINDS,
    SECRET_TYPES,
    STAGES,
    Finding,
    RuleParamsError,
    RuleSpec,
    ScanResult,
)

__all__ = [
    "ACTIONS",
    "PII_TYPES",
    "RULE_KINDS",
    "SECRET_TYPES",
    "STAGES",
    "Finding",
    "Policy",
    "RuleParamsError",
    "RuleSpec",
    "ScanResult",
    "StreamModerator",
    "default_policy_rules",
    "excerpt",
    "validate_params",
    "validate_rule",
]
