"""PII detectors: email, phone, credit card (Luhn), IBAN (mod-97), US SSN, IPv4, IPv6.

Patterns run on the ``cased`` view and are written so that every repetition is bounded and
no two quantifiers compete for the same characters (no catastrophic backtracking).
Validators then reject look-alikes: ``python-stdnum`` for the Luhn, IBAN (mod-97 plus each
country's length and BBAN format) and SSN checks, ``phonenumbers`` for phone numbers and
``ipaddress`` for addresses. A cheap structural filter runs before ``phonenumbers`` (which
costs 50-150 us a call), so dates and ids never reach it.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn
from stdnum.us import ssn as stdnum_ssn

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
    r"(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?|(?:1[ .\-]?)?\(\d{1,5}\)[ .\-]?)?"
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

# North American numbering: optional country digit 1, area code (bracketed or not).
_NANP = re.compile(r"(?:1[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}")
_NATIONAL = re.compile(r"\(?0[1-9]\d{0,4}\)?(?:[ .\-/]\d{1,8}){1,5}")
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
# Regions tried for a national number written with a trunk 0 and no country code.
_NATIONAL_REGIONS = ("DE", "GB", "FR", "IT", "AT", "CH", "NL", "BE")
# Card number groupings seen in the wild (Visa/MC/Discover 4-4-4-4(-3), Amex 4-6-5,
# Diners 4-6-4, 13/15-digit Visa 4-4-4-1 / 4-4-4-3). Others are ids, IBAN fragments, etc.
_CARD_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 3)}
# "v1.2.3.4", "version 10.0.0.1", "build 1.2.3.4" are versions, not addresses.
_VERSION_CONTEXT = re.compile(
    r"(?:\bv|\bver\.?|version|versi[oó]n|release|build|rev\.?|firmware|\bfw)\s*[:#]?\s*$",
    re.IGNORECASE,
)


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    return bool(stdnum_luhn.is_valid(digits))


def iban_ok(value: str) -> bool:
    """True for a valid IBAN: known country, that country's length and BBAN format, mod-97."""
    # check_country=False: national checks in stdnum also consult bank registries, which
    # reject valid published examples (BE68 5390 0754 7034); length and format still apply.
    return bool(stdnum_iban.is_valid(value, check_country=False))


def _fictional_nanp(number: phonenumbers.PhoneNumber) -> bool:
    """555 as area code or exchange: what examples and test data use (555-867-5309)."""
    national = str(number.national_number)
    return (
        number.country_code == 1
        and len(national) == 10
        and national[0] in "23456789"
        and "555" in (national[:3], national[3:6])
    )


def _phone_valid(raw: str, regions: tuple[str | None, ...]) -> bool:
    for region in regions:
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        # phonenumbers calls fictional 555 numbers invalid, but they are written exactly
        # like real ones and a model cannot tell them apart: redact them too.
        if phonenumbers.is_valid_number(number) or _fictional_nanp(number):
            return True
    return False


def _email(text: str, m: Any) -> int | None:
    local = m.group().split("@", 1)[0]
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return int(m.end())


def _phone(text: str, m: Any) -> int | None:
    raw = m.group()
    digits = re.sub(r"\D", "", raw)
    n = len(digits)
    if _SSN_SHAPE.fullmatch(raw):
        ok = False  # an invalid SSN (078-05-1120) is still not a phone number
    elif raw.startswith("+"):
        ok = 8 <= n <= 15 and _phone_valid(raw, (None,))
    elif _NANP.fullmatch(raw):
        ok = _phone_valid(raw, ("US",))
    elif 9 <= n <= 12 and _NATIONAL.fullmatch(raw) is not None:
        # National format with trunk prefix 0 (030 1234567, 020 7946 0958, 06 12 34 56 78).
        ok = _phone_valid(raw, _NATIONAL_REGIONS)
    else:
        ok = False
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
            return int(m.start()) + cut
        cut = raw.rfind(" ", 0, cut)
    return None


def _ssn(text: str, m: Any) -> int | None:
    # stdnum rejects area 000/666/9xx, group 00, serial 0000 and the published samples.
    return m.end() if stdnum_ssn.is_valid(m.group()) else None


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
    return int(m.end())


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
