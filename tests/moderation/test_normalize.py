"""Normalisation and the offset map back to the original text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.engine import Policy, RuleSpec
from moderation.engine.normalize import _normalise_chars, _normalise_segments, normalise

from .samples import ALL_STAGES


def test_ascii_text_is_only_lowercased_in_the_folded_view() -> None:
    cased, folded = normalise("Hello World")
    assert cased.text == "Hello World"
    assert folded.text == "hello world"
    assert folded.span(6, 11) == (6, 11)


def test_zero_width_and_soft_hyphen_characters_are_removed() -> None:
    cased, _ = normalise("a\u200bb\u200cc\u200dd\u2060e\ufefff\u00adg")
    assert cased.text == "abcdefg"


def test_nfkc_folds_fullwidth_and_ligatures() -> None:
    cased, folded = normalise("Ｆｕｌｌ ﬁle")
    assert cased.text == "Full file"
    assert folded.text == "full file"


def test_homoglyphs_map_to_latin_letters() -> None:
    _, folded = normalise("Іgnоrе")  # Cyrillic І, о, е
    assert folded.text == "ignore"


def test_casefolding_expands_sharp_s_and_keeps_offsets() -> None:
    text = "Straße X"
    _, folded = normalise(text)
    assert folded.text == "strasse x"
    i = folded.text.index("x")
    assert folded.span(i, i + 1) == (7, 8)


def test_combining_marks_stay_with_their_base_character() -> None:
    text = "cafe\u0301 ok"
    cased, _ = normalise(text)
    assert cased.text == "café ok"
    assert cased.span(3, 4) == (3, 5)  # the composed é covers both original chars


def test_offsets_map_back_to_the_original_text() -> None:
    text = "x \u200bＡＢ\u200dc"
    cased, _ = normalise(text)
    assert cased.text == "x ABc"
    assert cased.span(2, 5) == (3, 7)  # inner zero-width joiner included, outer one not


def test_redaction_replaces_zero_width_characters_inside_the_value() -> None:
    policy = Policy([RuleSpec("p", "PII", "pii", {"types": ["email"]}, ALL_STAGES, "redact")])
    text = "mail jane\u200b.doe@exa\u200dmple.com\u200b now"
    result = policy.scan(text, "input")
    assert result.text == "mail [REDACTED:email]\u200b now"
    (finding,) = result.findings
    assert text[finding.start : finding.end] == "jane\u200b.doe@exa\u200dmple.com"


# Characters that exercise every branch of the per-character path: ASCII, accents,
# expanding ("ß", "ﬁ", "İ"), vanishing (zero-width) and look-alike letters, a final sigma,
# Cherokee (case-folds to upper case) and a combining mark (the segment path).
_ALPHABET = "aZ .-09" + "éßﬁİΣσςÅÅꭰᏐ" + "Іо" + "\u200b\u00ad" + "Ｆ①" + "\u0301"


@given(text=st.text(alphabet=_ALPHABET, max_size=40))
@settings(max_examples=400, deadline=None)
def test_per_character_path_equals_the_segment_path(text: str) -> None:
    fast = _normalise_chars(text)
    if fast is None:  # combining marks: only the segment path applies
        assert "\u0301" in text
        return
    for got, want in zip(fast, _normalise_segments(text), strict=True):
        assert got.text == want.text
        for j in range(len(want.text)):
            assert got.span(j, j + 1) == want.span(j, j + 1)
        for j in range(len(want.text) + 1):
            assert got.orig_start(j) == want.orig_start(j)
        for i in range(len(text) + 1):
            assert got.count_before(i) == want.count_before(i)
