"""Keyword, regex, max_length and prompt-injection rules; actions; parameter validation."""

from __future__ import annotations

import pytest

from moderation.engine import Finding, Policy, RuleParamsError, RuleSpec, excerpt, validate_params

from . import samples
from .samples import ALL_STAGES


def rule(kind: str, params: dict, action: str = "flag", rid: str = "r") -> RuleSpec:
    return RuleSpec(rid, f"rule {rid}", kind, params, ALL_STAGES, action)


def spans(result: object, text: str) -> list[str]:
    return [text[f.start : f.end] for f in result.findings]  # type: ignore[attr-defined]


def test_keywords_match_whole_words_case_insensitively_after_normalisation() -> None:
    policy = Policy([rule("keyword", {"terms": ["Falcon", "straße"]})])
    text = "FALCON, falcons, Ｆａｌｃｏｎ, STRASSE, Fal\u200bcon"
    assert spans(policy.scan(text, "input"), text) == [
        "FALCON",
        "Ｆａｌｃｏｎ",
        "STRASSE",
        "Fal\u200bcon",
    ]


def test_substring_keywords_match_inside_words() -> None:
    policy = Policy([rule("keyword", {"terms": ["falcon"], "mode": "substring"})])
    text = "falcons"
    assert spans(policy.scan(text, "input"), text) == ["falcon"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("f.u.c.k you", ["f.u.c.k"]),
        ("s-h-i-t happens", ["s-h-i-t"]),
        ("S·H·I·T!", ["S·H·I·T"]),
        ("**shit**", ["shit"]),
        ("use blue_bird or BLUE-BIRD", ["blue_bird", "BLUE-BIRD"]),
        ("see project   falcon", ["project   falcon"]),
        ("export PROJECT_FALCON=1", ["PROJECT_FALCON"]),
        ("config.project_falcon.enabled", []),  # glued by joiners into a longer word
        ("project -- falcon", ["project -- falcon"]),
        ("fucking, f.u.c.k.i.n.g, shitty, s-h-i-t-t-y, unshit", []),  # inflections
        ("projectfalcon and project falconer", []),
    ],
)
def test_keywords_match_across_joiners_between_letters_and_words(
    text: str, found: list[str]
) -> None:
    terms = ["fuck", "shit", "bluebird", "project falcon"]
    policy = Policy([rule("keyword", {"terms": terms})])
    assert spans(policy.scan(text, "input"), text) == found


def test_thousands_of_keywords_compile_and_prefer_the_longest_term() -> None:
    terms = [f"term{i}" for i in range(5000)] + ["project falcon", "project"]
    policy = Policy([rule("keyword", {"terms": terms}, "redact")])
    result = policy.scan("see project falcon and term4999 but not term49999", "input")
    assert result.text == "see [REDACTED:keyword] and [REDACTED:keyword] but not term49999"


def test_operator_regexes_run_in_re2_and_are_case_insensitive_by_default() -> None:
    policy = Policy([rule("regex", {"pattern": r"\bTCK-\d+\b"}, "redact")])
    assert policy.scan("ticket tck-123456 done", "input").text == "ticket [REDACTED:regex] done"


def test_case_sensitive_regexes_see_original_case() -> None:
    policy = Policy([rule("regex", {"pattern": "ABC", "case_sensitive": True})])
    assert len(policy.scan("abc ABC", "input").findings) == 1


def test_regex_with_catastrophic_backtracking_pattern_is_fast() -> None:
    policy = Policy([rule("regex", {"pattern": r"(a|aa)+b"})])
    assert policy.scan("a" * 5000 + "c", "input").findings == []


def test_allow_rules_suppress_findings_inside_their_span(rich_policy: Policy) -> None:
    text = "write to support@switchyard.dev or jane@example.com"
    result = rich_policy.scan(text, "output")
    assert result.text == "write to support@switchyard.dev or [REDACTED:email]"


def test_the_allow_parameter_dismisses_one_value_for_that_rule_only() -> None:
    rules = [rule("pii", {"types": ["email"], "allow": ["OPS@example.com"]}, "redact")]
    result = Policy(rules).scan("ops@example.com and dev@example.com", "output")
    assert result.text == "ops@example.com and [REDACTED:email]"


def test_flag_reports_without_changing_the_text() -> None:
    policy = Policy([rule("keyword", {"terms": ["falcon"]}, "flag")])
    result = policy.scan("project falcon", "input")
    assert result.text == "project falcon"
    assert [f.action for f in result.findings] == ["flag"]
    assert result.blocked is None


def test_block_sets_the_first_blocking_finding() -> None:
    policy = Policy([rule("keyword", {"terms": ["falcon", "eagle"]}, "block")])
    result = policy.scan("eagle then falcon", "input")
    assert result.blocked is not None and result.blocked.start == 0


def test_rules_apply_only_to_their_stages() -> None:
    policy = Policy(
        [RuleSpec("r", "r", "keyword", {"terms": ["x1"]}, frozenset({"input"}), "flag")]
    )
    assert policy.scan("x1", "input").findings
    assert not policy.scan("x1", "output").findings
    with pytest.raises(ValueError):
        policy.scan("x1", "nowhere")


def test_max_length_redacts_everything_beyond_the_limit() -> None:
    policy = Policy([rule("max_length", {"max_chars": 5}, "redact")])
    result = policy.scan("0123456789", "input")
    assert result.text == "01234[REDACTED:max_length]"
    assert (result.findings[0].start, result.findings[0].end) == (5, 10)


def test_overlapping_redactions_merge_into_one_marker() -> None:
    policy = Policy(
        [
            rule("keyword", {"terms": ["jane.doe"], "mode": "substring"}, "redact", "a"),
            rule("pii", {"types": ["email"]}, "redact", "b"),
        ]
    )
    assert policy.scan(f"to {samples.EMAIL}.", "output").text == "to [REDACTED:email]."


def test_excerpt_shows_context_with_every_sensitive_span_redacted() -> None:
    policy = Policy(
        [
            rule("keyword", {"terms": ["falcon"]}, "flag", "kw"),
            rule("pii", {}, "flag", "pii"),
        ]
    )
    text = f"mail {samples.EMAIL} about falcon, card {samples.CARD} end"
    result = policy.scan(text, "input")
    keyword = next(f for f in result.findings if f.kind == "keyword")
    shown = excerpt(text, keyword, result.findings, context=30)
    assert "falcon" in shown
    assert samples.EMAIL not in shown and "[REDACTED:email]" in shown
    assert "1111" not in shown


def test_findings_carry_no_matched_text() -> None:
    assert "text" not in {f for f in Finding.__dataclass_fields__}


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("nope", {}, "unknown rule kind"),
        ("keyword", {"terms": []}, "at least one"),
        ("keyword", {"terms": ["a"], "mode": "fuzzy"}, "'mode'"),
        ("regex", {"pattern": "(unclosed"}, "invalid pattern"),
        ("regex", {"pattern": r"(?=x)x"}, "invalid pattern"),
        ("regex", {"pattern": "a*"}, "empty"),
        ("regex", {"pattern": r"(\w+\s+)+"}, "invalid pattern"),
        ("pii", {"types": ["passport"]}, "unknown types"),
        ("secret", {"types": ["aws"]}, "unknown types"),
        ("max_length", {"max_chars": 0}, "positive integer"),
        ("external", {"fail_mode": "maybe"}, "fail_mode"),
        ("keyword", {"terms": ["a"], "colour": 1}, "unknown parameter"),
    ],
)
def test_invalid_parameters_raise_clear_errors(kind: str, params: dict, message: str) -> None:
    with pytest.raises(RuleParamsError, match=message):
        validate_params(kind, params)


def test_validate_params_fills_defaults() -> None:
    assert validate_params("pii", {})["types"][0] == "email"
    assert validate_params("external", {})["model"] == "omni-moderation-latest"
    assert validate_params("regex", {"pattern": "x"})["max_match_length"] == 256
