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


@pytest.mark.parametrize(
    "line",
    [
        "aws_secret_access_key = {key}",
        "export AWS_SECRET_ACCESS_KEY={key}",
        'AWS_SECRET_ACCESS_KEY="{key}"',
        '{{"Credentials": {{"AccessKeyId": "ASIAIOSFODNN7EXAMPLE", "SecretAccessKey": "{key}"}}}}',
        "s3 = boto3.client('s3', aws_access_key_id=kid, aws_secret_access_key='{key}')",
        "AWS secret: {key}",
    ],
)
def test_an_aws_secret_key_is_found_with_aws_context_on_its_line(
    default_policy: Policy, line: str
) -> None:
    text = line.format(key=samples.AWS_SECRET_KEY)
    findings = [f for f in default_policy.scan(text, "output").findings]
    secret = [f for f in findings if f.kind == "aws_secret_key"]
    assert len(secret) == 1
    assert text[secret[0].start : secret[0].end] == samples.AWS_SECRET_KEY


@pytest.mark.parametrize(
    "text",
    [
        "token {key}",  # no AWS context
        "aws_secret_access_key is configured below\n{key}",  # context on another line
        "aws s3 ls: etag 3f786850e387550fdab836ed7e6dc881de23001b",  # a hex digest
        "AWS commit 9FB0A2C1D3E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8",  # upper-case hex
    ],
)
def test_a_40_character_token_without_aws_context_is_not_a_secret_key(
    default_policy: Policy, text: str
) -> None:
    assert kinds(default_policy, text.format(key=samples.AWS_SECRET_KEY)) == []


def test_a_gcp_service_account_private_key_with_escaped_newlines_is_redacted(
    default_policy: Policy,
) -> None:
    body = "\\n".join(samples.PEM.splitlines()[1:-1])
    key = f"-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n"
    text = f'{{"type": "service_account", "project_id": "demo", "private_key": "{key}"}}'
    result = default_policy.scan(text, "output")
    assert [f.kind for f in result.findings] == ["pem_private_key"]
    assert "MIIB" not in result.text
    assert result.text.endswith('"private_key": "[REDACTED:pem_private_key]\\n"}')


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----",
        "A key file starts with -----BEGIN PRIVATE KEY----- and has base64 lines after it",
        "the footer is -----END PRIVATE KEY----- on its own line",
        '"private_key": "-----BEGIN PRIVATE KEY-----\\n<redacted>\\n-----END PRIVATE KEY-----"',
    ],
)
def test_a_pem_header_or_footer_without_key_material_is_not_reported(
    default_policy: Policy, text: str
) -> None:
    assert kinds(default_policy, text) == []


@pytest.mark.parametrize(
    "number", ["1-800-555-0199", "1 (415) 555-0132", "1.415.555.0132", "1 415 555 0132"]
)
def test_a_nanp_number_with_a_leading_country_digit_is_a_phone(
    default_policy: Policy, number: str
) -> None:
    text = f"call {number} today"
    (finding,) = default_policy.scan(text, "output").findings
    assert (finding.kind, text[finding.start : finding.end]) == ("phone", number)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tel 06 6982 1234", ["phone"]),  # Italian landline, trunk 0 kept
        ("Tel +39 06 6982 1234", ["phone"]),
        ("Tel +44 11 2345 678", []),  # no UK number starts 011
        ("Tel +1 123 456 7890", []),  # NANP area codes never start with 1
        ("Tel +49 1 2", []),
        ("SSN 078-05-1120 is the famous wallet sample", []),  # neither SSN nor phone
        ("IBAN DE89 3704 0044 0532 0130", []),  # too short for a German IBAN
    ],
)
def test_phone_and_iban_candidates_are_validated_by_the_libraries(
    default_policy: Policy, text: str, expected: list[str]
) -> None:
    assert kinds(default_policy, text) == expected
