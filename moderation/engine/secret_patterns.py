"""Secret detectors: provider key formats, PEM private keys, JWTs and known vault values.

Two formats carry no recognisable prefix and are decided by context or content:

* An AWS secret access key is 40 characters of base64 alphabet. It is only reported when
  AWS context appears earlier on the same line (``aws_secret_access_key =``, boto3's
  ``aws_secret_access_key=``, STS JSON ``"SecretAccessKey":``, ``AWS_SECRET_ACCESS_KEY=``):
  without it a 40-character token is as likely a git hash or a file digest.
* A PEM private key must contain key material: a header or footer alone (documentation,
  a truncated paste) is not a secret. Bodies may use literal ``\\n`` escapes, as in the
  ``private_key`` field of a GCP service-account JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .detectors import Detector, literal_detector, python_detector

# PEM blocks are long; the body is capped at 4000 chars so the stream's hold-back stays
# bounded. A header without an END line still counts when followed by key material.
# The body class includes "\\" for JSON-escaped bodies ("...KEY-----\\nMIIE...\\n").
_PEM_LABEL = r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY-----"
PEM = (
    _PEM_LABEL
    + r"(?:[A-Za-z0-9+/=\s:,.\\\-]{1,4000}?-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY-----"
    + r"|[A-Za-z0-9+/=\s\\]{40,4000})"
)
# Shortest run of base64 characters that counts as key material (PEM lines are 64 wide;
# the shortest real keys, Ed25519, still have a 48-character line).
_PEM_MATERIAL = re.compile(r"[A-Za-z0-9+/]{40}")
JWT = (
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,1000}\.[A-Za-z0-9_\-]{2,3000}"
    r"\.[A-Za-z0-9_\-]{0,1000}(?![A-Za-z0-9_\-])"
)
ANTHROPIC = r"(?<![A-Za-z0-9_\-])sk-ant-[A-Za-z0-9_\-]{20,200}(?![A-Za-z0-9_\-])"
OPENAI = (
    r"(?<![A-Za-z0-9_\-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,200}"
    r"(?![A-Za-z0-9_\-])"
)
GITHUB = (
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})"
    r"(?![A-Za-z0-9_])"
)
AWS = r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"
SLACK = r"(?<![A-Za-z0-9_\-])xox[baprs]-[0-9A-Za-z\-]{10,250}(?![A-Za-z0-9_\-])"
STRIPE = r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,250}(?![A-Za-z0-9_])"
GOOGLE = r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_\-])"
AWS_SECRET = r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
# Context that names an AWS secret key; must appear earlier on the same line, within
# AWS_CONTEXT_CHARS characters (the detector's lookbehind, so streaming sees it too).
_AWS_CONTEXT = re.compile(
    r"aws_?secret|secret_?access_?key|secretaccesskey|aws.{0,40}secret|secret.{0,20}aws",
    re.IGNORECASE,
)
AWS_CONTEXT_CHARS = 120

MIN_KNOWN_SECRET_LENGTH = 4


def _has_digit_and_letter(text: str, m: Any) -> int | None:
    # Real keys are random; hyphenated prose like "sk-learn-is-a-library" is not.
    value = m.group()
    if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
        return int(m.end())
    return None


def _jwt(text: str, m: Any) -> int | None:
    header = m.group().split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        obj = json.loads(decoded)
    except (binascii.Error, ValueError):
        return None
    return m.end() if isinstance(obj, dict) and "alg" in obj else None


def _pem(text: str, m: Any) -> int | None:
    body = m.group()[len("-----BEGIN ") :].replace("\\n", "\n")
    return m.end() if _PEM_MATERIAL.search(body) else None


def _aws_secret(text: str, m: Any) -> int | None:
    value = m.group()
    kinds = sum((any(c.isupper() for c in value), any(c.islower() for c in value)))
    if kinds < 2 or not any(c.isdigit() or c in "/+" for c in value):
        return None  # hex digests and lower-case ids are not AWS secrets
    before = text[max(0, m.start() - AWS_CONTEXT_CHARS) : m.start()]
    line = before[before.rfind("\n") + 1 :]
    return m.end() if _AWS_CONTEXT.search(line) else None


# (type, pattern, validator); order = priority among overlapping findings of one rule.
_SPECS = (
    ("pem_private_key", PEM, _pem),
    ("jwt", JWT, _jwt),
    ("anthropic_key", ANTHROPIC, _has_digit_and_letter),
    ("openai_key", OPENAI, _has_digit_and_letter),
    ("github_token", GITHUB, None),
    ("aws_access_key", AWS, None),
    ("slack_token", SLACK, _has_digit_and_letter),
    ("stripe_key", STRIPE, None),
    ("google_api_key", GOOGLE, None),
    ("aws_secret_key", AWS_SECRET, _aws_secret),
)


def secret_detectors(types: tuple[str, ...], known: Sequence[str]) -> list[Detector]:
    """Detectors for the selected secret types plus literal known secret values.

    ``known`` must already be normalised (cased view). Known values get the highest
    priority: a vault value is reported as ``known_secret`` even if it also looks like a
    provider key.
    """
    out: list[Detector] = []
    if known:
        # Never cached: the compiled pattern contains the secret values.
        out.append(literal_detector("known_secret", known, view="cased", whole_word=False))
    return out + list(_pattern_detectors(types))


@lru_cache(maxsize=64)
def _pattern_detectors(types: tuple[str, ...]) -> tuple[Detector, ...]:
    return tuple(
        python_detector(
            kind,
            pattern,
            validate=validate,
            priority=priority,
            lookbehind=AWS_CONTEXT_CHARS + 2 if kind == "aws_secret_key" else 8,
        )
        for priority, (kind, pattern, validate) in enumerate(_SPECS, start=1)
        if kind in types
    )


def usable_known_secrets(values: Sequence[str]) -> list[str]:
    """Known secret values long enough to search for (short ones would flag everything)."""
    return [v for v in values if len(v.strip()) >= MIN_KNOWN_SECRET_LENGTH]
