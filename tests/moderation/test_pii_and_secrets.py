"""PII and secret detectors, including hard negatives."""

from __future__ import annotations

import pytest

from moderation.engine import SECRET_TYPES, Policy
from moderation.engine.pii import iban_ok, luhn_ok

from . import samples


def kinds(policy: Policy, text: str) -> list[str]:
    return [f.kind for f in policy.scan(text, "output").findings]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"mail {samples.EMAIL}", "email"),
        (f"call {samples.PHONE_UK} now", "phone"),
        (f"call {samples.PHONE_US} now", "phone"),
        (f"call {samples.PHONE_DE} now", "phone"),
        (f"card {samples.CARD}", "credit_card"),
        (f"card {samples.CARD_PLAIN}", "credit_card"),
        (f"iban {samples.IBAN}", "iban"),
        (f"iban {samples.IBAN_GB}", "iban"),
        (f"ssn {samples.SSN}", "us_ssn"),
        (f"host {samples.IPV4}", "ipv4"),
        (f"host {samples.IPV6}", "ipv6"),
    ],
)
def test_it_finds_each_pii_type(default_policy: Policy, text: str, expected: str) -> None:
    assert kinds(default_policy, text) == [expected]


@pytest.mark.parametrize("kind", [*SECRET_TYPES, "known_secret"])
def test_it_finds_each_secret_type(default_policy: Policy, kind: str) -> None:
    value = samples.SENSITIVE_VALUES[kind]
    assert kinds(default_policy, f"value: {value} end") == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "ORD-2024-000123 shipped",
        "request 123e4567-e89b-12d3-a456-426614174000",
        "release v1.2.3.4 is out",
        "version 10.0.0.1 of the firmware",
        "meeting on 2024-05-01 at 10:30:45",
        "SSN 000-12-3456 and 666-12-3456 are invalid",
        "IBAN DE89 3704 0044 0532 0130 01 has a bad checksum",
        "IP 999.12.1.1 is not an address",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::vector<int>",
        "sk-learn-is-a-python-library-alias",
        "ISBN 978-3-16-148410-0",
        "order 1234567 ok",
    ],
)
def test_hard_negatives_are_not_flagged(default_policy: Policy, text: str) -> None:
    assert kinds(default_policy, text) == []


def test_dotted_quads_count_as_ipv4_unless_they_follow_a_version_marker(
    default_policy: Policy,
) -> None:
    # Documented decision: "1.2.3.4" alone IS an IPv4 address; "v1.2.3.4", "version 1.2.3.4",
    # "build 1.2.3.4" are versions.
    assert kinds(default_policy, "ping 1.2.3.4") == ["ipv4"]
    assert kinds(default_policy, "build 1.2.3.4 released") == []


def test_luhn_and_mod97_checksums() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00")
    assert not iban_ok("DE89 3704 0044 0532 0130 01")


def test_an_iban_is_reported_once_and_not_also_as_a_phone_number(
    default_policy: Policy,
) -> None:
    assert kinds(default_policy, f"IBAN {samples.IBAN} ok") == ["iban"]


def test_an_iban_followed_by_an_uppercase_word_is_trimmed(default_policy: Policy) -> None:
    text = f"IBAN {samples.IBAN} AND more"
    (finding,) = default_policy.scan(text, "output").findings
    assert text[finding.start : finding.end] == samples.IBAN


def test_jwt_needs_a_header_with_alg(default_policy: Policy) -> None:
    assert kinds(default_policy, "eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.abc") == []


def test_a_pem_block_is_redacted_whole(default_policy: Policy) -> None:
    result = default_policy.scan(f"key:\n{samples.PEM}\nbye", "output")
    assert result.text == "key:\n[REDACTED:pem_private_key]\nbye"


def test_known_secret_values_are_found_but_never_shown() -> None:
    policy = Policy([], known_secrets=[samples.KNOWN_SECRET, "abc"])  # "abc" is too short
    result = policy.scan(f"the value {samples.KNOWN_SECRET} and abc", "output")
    assert result.text == "the value [REDACTED:known_secret] and abc"
    assert samples.KNOWN_SECRET not in repr(policy)
    assert samples.KNOWN_SECRET not in repr(result)
    assert samples.KNOWN_SECRET not in repr(policy._by_stage)


def test_a_known_secret_outranks_a_provider_key_pattern() -> None:
    policy = Policy(samples.rich_policy().rules[:2], known_secrets=[samples.AWS_KEY])
    assert kinds(policy, f"id {samples.AWS_KEY}") == ["known_secret"]
