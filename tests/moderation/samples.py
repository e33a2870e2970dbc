"""Sample sensitive values shared by the moderation tests (all fake / documented examples)."""

from __future__ import annotations

import base64
import json

from moderation.engine import Policy, RuleSpec, default_policy_rules

ALL_STAGES = frozenset({"input", "output", "tool_output"})


def make_jwt() -> str:
    """A syntactically valid (unsigned-looking) JWT."""

    def seg(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg({'sub': '1234567890'})}.SflKxwRJSMeKKF2QT4"


EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
CARD_PLAIN = "5555555555554444"
IBAN = "DE89 3704 0044 0532 0130 00"
IBAN_GB = "GB82WEST12345698765432"
SSN = "536-22-1234"
PHONE_UK = "+44 20 7946 0958"
PHONE_US = "(555) 123-4567"
PHONE_DE = "+49 30 1234567"
IPV4 = "192.168.10.25"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
SLACK_TOKEN = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE_KEY = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE_KEY = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
JWT = make_jwt()
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\n"
    "-----END RSA PRIVATE KEY-----"
)
KNOWN_SECRET = "vault-Value-9f8e7d6c"

SENSITIVE_VALUES = {
    "email": EMAIL,
    "credit_card": CARD,
    "iban": IBAN,
    "us_ssn": SSN,
    "phone": PHONE_UK,
    "ipv4": IPV4,
    "ipv6": IPV6,
    "aws_access_key": AWS_KEY,
    # Found only with AWS context earlier on the same line; the finding is the key alone.
    "aws_secret_key": f"aws_secret_access_key={AWS_SECRET_KEY}",
    "github_token": GITHUB_TOKEN,
    "openai_key": OPENAI_KEY,
    "anthropic_key": ANTHROPIC_KEY,
    "slack_token": SLACK_TOKEN,
    "stripe_key": STRIPE_KEY,
    "google_api_key": GOOGLE_KEY,
    "jwt": JWT,
    "pem_private_key": PEM,
    "known_secret": KNOWN_SECRET,
}


def rich_policy() -> Policy:
    """Default rules plus a keyword, an operator regex and an allow rule."""
    rules = default_policy_rules() + [
        RuleSpec(
            "kw",
            "Codenames",
            "keyword",
            {"terms": ["project falcon", "bluebird", "shit"]},
            ALL_STAGES,
            "redact",
        ),
        RuleSpec(
            "rx", "Ticket ids", "regex", {"pattern": r"\bTCK-\d{4,8}\b"}, ALL_STAGES, "redact"
        ),
        RuleSpec(
            "ok",
            "Support address",
            "keyword",
            {"terms": ["support@switchyard.dev"], "mode": "substring"},
            ALL_STAGES,
            "allow",
        ),
    ]
    return Policy(rules, known_secrets=[KNOWN_SECRET])


# Terms of the keyword rule the evaluation set is labelled for.
EVAL_KEYWORDS = ["fuck", "shit", "project falcon", "bluebird", "merde", "scheisse", "mierda"]


def evaluation_policy(*, layers: list[str] | None = None) -> Policy:
    """The default rules plus a keyword rule, as tests/moderation/eval_set.jsonl expects.

    ``layers`` restricts the prompt-injection rule to some layers (per-layer recall)."""
    rules = default_policy_rules()
    if layers is not None:
        rules = [
            RuleSpec(r.id, r.name, r.kind, {"layers": layers}, r.stages, r.action, r.severity)
            if r.kind == "prompt_injection"
            else r
            for r in rules
        ]
    rules.append(
        RuleSpec(
            "eval:kw", "Banned terms", "keyword", {"terms": EVAL_KEYWORDS}, ALL_STAGES, "redact"
        )
    )
    return Policy(rules, known_secrets=[KNOWN_SECRET])
