"""Gates: RE2 finds where a built-in pattern's next match can start; the chain of matches
searched from there must be exactly the pattern's ``finditer`` chain."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.engine.normalize import normalise
from moderation.engine.regex_tools import Utf8Text

from . import samples
from .test_streaming_property import PLAIN, SEPARATORS, VALUES, ZW

POLICY = samples.rich_policy()
GATED = [
    det
    for stage in ("input", "output", "tool_output")
    for rule in POLICY._stage_rules(stage)
    for det in rule.detectors
    if det.gate is not None
]

documents = st.lists(
    st.sampled_from(PLAIN + VALUES + ZW + ["Straße", "née", "ÀÉÎ", "日本"]), max_size=30
).flatmap(
    lambda words: st.lists(
        st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)
    ).map(lambda seps: "".join(w + s for w, s in zip(words, seps, strict=True)))
)


def test_the_built_in_detectors_have_gates() -> None:
    assert len({id(d) for d in GATED}) >= 25


@given(text=documents, start=st.integers(min_value=0, max_value=40))
@settings(max_examples=300, deadline=None)
def test_a_gated_chain_is_the_finditer_chain(text: str, start: int) -> None:
    cased, folded = normalise(text)
    for det in GATED:
        view = cased.text if det.view == "cased" else folded.text
        pos = min(start, len(view))
        want = [m.span() for m in det.finditer(view, pos)]
        assert det.gate is not None
        got = [m.span() for m in det.gate.matches(det.search, view, Utf8Text(view), pos)]
        assert got == want, det
