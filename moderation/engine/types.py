"""Value types shared by the moderation engine: rules, findings and scan results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STAGES = frozenset({"input", "output", "tool_output"})
ACTIONS = ("allow", "redact", "flag", "block")
SEVERITIES = ("low", "medium", "high")
RULE_KINDS = (
    "keyword",
    "regex",
    "pii",
    "secret",
    "prompt_injection",
    "max_length",
    "external",
)

PII_TYPES = ("email", "credit_card", "iban", "us_ssn", "ipv6", "ipv4", "phone")
SECRET_TYPES = (
    "pem_private_key",
    "jwt",
    "anthropic_key",
    "openai_key",
    "github_token",
    "aws_access_key",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "aws_secret_key",
)
# Finding kinds whose matched text is itself sensitive: excerpts always hide them.
SENSITIVE_KINDS = frozenset(PII_TYPES) | frozenset(SECRET_TYPES) | {"known_secret"}


class RuleParamsError(ValueError):
    """A rule's kind, action, stages or parameters are invalid (message is for humans).

    ``param`` names the parameter at fault when one is, so an editor can show the message
    on that parameter's field.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class RuleSpec:
    """One moderation rule, as the database row holds it."""

    id: str
    name: str
    kind: str
    params: dict[str, Any]
    stages: frozenset[str]
    action: str
    severity: str = "medium"


@dataclass(frozen=True)
class Finding:
    """One match of a rule. Offsets are [start, end) in the ORIGINAL text.

    Deliberately carries no matched text: findings are stored and logged, and the matched
    text may be a secret. Use :func:`moderation.engine.excerpt` to show context safely.
    """

    rule_id: str
    rule_name: str
    kind: str
    action: str
    stage: str
    start: int
    end: int
    severity: str

    @property
    def sensitive(self) -> bool:
        """True when the matched text must never be shown (PII, secrets, redactions)."""
        return self.kind in SENSITIVE_KINDS or self.action == "redact"


@dataclass
class ScanResult:
    """Outcome of scanning one text: findings, the redacted text and the blocking finding."""

    findings: list[Finding]
    text: str
    blocked: Finding | None
    # Non-fatal problems, e.g. an external moderation API that failed open.
    errors: list[str] = field(default_factory=list)
