"""PII detectors: email, phone, credit card (Luhn), IBAN (mod-97), US SSN, IPv4, IPv6.

Patterns run on the ``cased`` view and are written so that every repetition is bounded and
no two quantifiers compete for the same characters (no catastrophic backtracking). Cheap
validators then reject look-alikes: Luhn, mod-97, SSN area/group/serial, ``ipaddress``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

from .detectors import Detector, python_detector

EMAIL = (
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}"
    r"(?![\w\-]|\.[A-Za-z0-9])"
)
# Digit groups must be separated by exactly one separator, so a run of digits can only be
# split one way (this is what keeps the pattern linear).
PHONE = (
    r"(?<![\w+\-./])"
    r"(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?|\(\d{1,5}\)[ .\-]?)?"
    r"(?:\d{1,8}(?:[ .\-]\d{1,8}){1,6}|\d{6,15})"
    r"(?![\w\-]|[.,/]?\d)"
)
CARD = r"(?<![\w\-.])\d(?:[ \-]?\d){12,18}(?![\w\-]|[.,]\d)"
IBAN = r"(?<![\w\-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w\-])"
SSN = r"(?<![\w\-])\d{3}-\d{2}-\d{4}(?![\w\-]|\.\d)"
IPV4 = r"(?<![\w.\-])(?:\d{1,3}\.){3}\d{1,3}(?![\w\-]|\.\d)"
# A colon within the first five characters keeps ordinary hex-looking words ("face",
# "added") from even becoming candidates.
IPV6 = r"(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{1,38}(?:\.\d{1,3}){0,3}(?![\w:])"

_NANP = re.compile(r"\d{3}[ .\-]\d{3}[ .\-]\d{4}")
_NATIONAL = re.compile(r"0[1-9]\d{0,4}(?:[ .\-/]\d{1,8}){1,5}")
# Card number groupings seen in the wild (Visa/MC/Discover 4-4-4-4(-3), Amex 4-6-5,
# Diners 4-6-4, 13/15-digit Visa 4-4-4-1 / 4-4-4-3). Others are ids, IBAN fragments, etc.
_CARD_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 3)}
# "v1.2.3.4", "version 10.0.0.1", "build 1.2.3.4" are versions, not addresses.
_VERSION_CONTEXT = re.compile(
    r"(?:\bv|\bver\.?|version|versi[oó]n|release|build|rev\.?|firmware|\bfw)\s*[:#]?\s*$",
    re.IGNORECASE,
)
_SSN_INVALID = {"078-05-1120", "219-09-9999"}  # famous published sample numbers


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    """True for a structurally valid IBAN (length 15-34, ISO 13616 mod-97 == 1)."""
    compact = value.replace(" ", "")
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def _email(text: str, m: Any) -> int | None:
    local = m.group().split("@", 1)[0]
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return m.end()


def _phone(text: str, m: Any) -> int | None:
    raw = m.group()
    digits = re.sub(r"\D", "", raw)
    n = len(digits)
    if raw.startswith("+"):
        ok = 8 <= n <= 15
    elif raw.startswith("("):
        ok = 10 <= n <= 15
    elif _NANP.fullmatch(raw):
        ok = True
    else:
        # National format with trunk prefix 0 (030 1234567, 020 7946 0958, 06 12 34 56 78).
        ok = 9 <= n <= 12 and _NATIONAL.fullmatch(raw) is not None
    return m.end() if ok else None


def _card(text: str, m: Any) -> int | None:
    raw = m.group()
    digits = re.sub(r"\D", "", raw)
    separators = set(re.sub(r"\d", "", raw))
    if len(separators) > 1 or not 13 <= len(digits) <= 19:
        return None
    if digits[0] not in "23456" or len(set(digits)) == 1:
        return None  # no major network starts with 0/1/7/8/9
    if separators and tuple(len(g) for g in re.split(r"[ \-]", raw)) not in _CARD_GROUPS:
        return None
    return m.end() if luhn_ok(digits) else None


def _iban(text: str, m: Any) -> int | None:
    raw = m.group()
    # The pattern may swallow a trailing upper-case word; try shorter cuts at spaces.
    cut = len(raw)
    while cut > 0:
        if iban_ok(raw[:cut]):
            return m.start() + cut
        cut = raw.rfind(" ", 0, cut)
    return None


def _ssn(text: str, m: Any) -> int | None:
    raw = m.group()
    area, group, serial = raw.split("-")
    if area in ("000", "666") or area >= "900" or group == "00" or serial == "0000":
        return None
    return None if raw in _SSN_INVALID else m.end()


def _ipv4(text: str, m: Any) -> int | None:
    try:
        ipaddress.IPv4Address(m.group())
    except ValueError:
        return None
    before = text[max(0, m.start() - 24) : m.start()]
    return None if _VERSION_CONTEXT.search(before) else m.end()


def _ipv6(text: str, m: Any) -> int | None:
    raw = m.group()
    if raw.count(":") < 2 or not any(c not in ":." for c in raw):
        return None
    try:
        ipaddress.IPv6Address(raw)
    except ValueError:
        return None
    return m.end()


# (type, pattern, validator, lookbehind context); list order is the priority among
# overlapping findings of one rule (an IBAN's digits must not also count as a phone).
_SPECS = (
    ("email", EMAIL, _email, 4),
    ("credit_card", CARD, _card, 4),
    ("iban", IBAN, _iban, 4),
    ("us_ssn", SSN, _ssn, 4),
    ("ipv6", IPV6, _ipv6, 4),
    ("ipv4", IPV4, _ipv4, 28),
    ("phone", PHONE, _phone, 4),
)


@lru_cache(maxsize=64)
def _cached(types: tuple[str, ...]) -> tuple[Detector, ...]:
    return tuple(_build(types))


def pii_detectors(types: tuple[str, ...]) -> list[Detector]:
    """Detectors for the selected PII types (compiled once per process and shared:
    detectors are immutable)."""
    return list(_cached(types))


def _build(types: tuple[str, ...]) -> list[Detector]:
    out = []
    for priority, (kind, pattern, validate, lookbehind) in enumerate(_SPECS):
        if kind in types:
            out.append(
                python_detector(
                    kind, pattern, validate=validate, lookbehind=lookbehind, priority=priority
                )
            )
    return out
