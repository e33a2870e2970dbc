"""Detectors: one compiled pattern each, plus what streaming needs to know about it.

A detector finds raw matches in one normalised view. Its matches form a *chain*: search
from position ``q``, take the leftmost match, continue at its end (exactly like
``finditer``). A validator may reject a match (e.g. a failed Luhn check) or trim its end;
rejected matches still advance the chain, so whole-text and streamed scans agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .regex_tools import (
    BUILTIN_DFA_MEM,
    Gate,
    PrefixMatcher,
    compile_re2,
    flag_prefix,
    gate_for_python,
    prefix_regex_for_python,
)

# (view_text, match) -> end offset to report (possibly trimmed), or None to reject.
Validator = Callable[[str, Any], "int | None"]


class Detector:
    """A compiled pattern with its streaming metadata.

    ``prefix`` matches ``(?:P)\\z`` for the pattern's prefix language (see
    ``regex_tools``), or None when any text within ``max_width`` of the end may still
    match; ``lookbehind``/``lookahead`` bound the context (in normalised chars)
    that the pattern and validator read outside a match.
    """

    __slots__ = (
        "kind",
        "view",
        "search",
        "finditer",
        "prefix",
        "max_width",
        "lookbehind",
        "lookahead",
        "validate",
        "priority",
        "stages",
        "gate",
    )

    def __init__(
        self,
        *,
        kind: str,
        view: str,
        search: Callable[[str, int], Any],
        finditer: Callable[[str, int], Any],
        prefix: PrefixMatcher | None,
        max_width: int,
        lookbehind: int = 8,
        lookahead: int = 0,
        validate: Validator | None = None,
        priority: int = 0,
    ) -> None:
        self.kind = kind
        self.view = view
        self.search = search
        self.finditer = finditer
        self.prefix = prefix
        self.max_width = max_width
        self.lookbehind = lookbehind
        self.lookahead = lookahead
        self.validate = validate
        self.priority = priority
        # Stages this detector runs in (None = every stage the rule covers).
        self.stages: frozenset[str] | None = None
        # Finds where the next match can start (whole-text chains; see regex_tools.Gate).
        self.gate: Gate | None = None

    def __repr__(self) -> str:
        # Never show the pattern: for known secrets it contains the secret values.
        return f"<Detector {self.kind} view={self.view}>"


def python_detector(
    kind: str,
    pattern: str,
    *,
    view: str = "cased",
    flags: int = 0,
    validate: Validator | None = None,
    lookbehind: int = 8,
    lookahead: int = 0,
    priority: int = 0,
) -> Detector:
    """Build a detector from a built-in (trusted, non-backtracking-prone) Python pattern."""
    compiled = re.compile(pattern, flags)
    prefix_src, width = prefix_regex_for_python(pattern, flags)
    prefix = PrefixMatcher(flag_prefix(flags) + f"(?:{prefix_src})\\z", BUILTIN_DFA_MEM)
    detector = Detector(
        kind=kind,
        view=view,
        search=compiled.search,
        finditer=compiled.finditer,
        prefix=prefix,
        max_width=width,
        lookbehind=lookbehind,
        lookahead=lookahead,
        validate=validate,
        priority=priority,
    )
    detector.gate = gate_for_python(pattern, flags)
    return detector


def trie_pattern(terms: Iterable[str]) -> str:
    """One regex alternation for many literals, shaped as a trie.

    Python's engine tries alternatives in order at each position; a trie makes that cost
    proportional to the matched prefix instead of the number of terms, and ordering
    longer continuations first gives leftmost-longest matches.
    """
    return _emit_trie(_trie(terms))


def _emit_trie(node: dict[str, Any]) -> str:
    branches = [_token_regex(t) + _emit_trie(child) for t, child in sorted(node.items()) if t]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:
        return f"(?:{body})?"
    return body


# Joiners an obfuscated keyword may carry between its letters ("f.u.c.k", "s-h-i-t",
# "blue_bird", "b*i*r*d", "ca·ta·lan"); between words, any run of spaces and joiners.
JOINERS = ".-_*\u00b7"
_JOIN = "[.\\-_*\u00b7]"
_JOIN_TOKEN = "\0join"
_SEP_TOKEN = "\0sep"
_TERM_SPLIT = re.compile(f"[\\s{re.escape(JOINERS)}]+")
# Whole words: no letter or digit right before (also not across one joiner, so the tail of
# "un-f.u.c.k" does not match) nor after, even across up to 3 joiners ("f.u.c.k.ing" is
# an inflection, a different word). Bounded so the stream's lookahead stays bounded.
_WORD_BEFORE = f"(?<![^\\W_])(?<![^\\W_]{_JOIN})"
_WORD_AFTER = f"(?!{_JOIN}{{0,3}}[^\\W_])"


def joined_term_pattern(terms: Iterable[str], *, whole_word: bool) -> str:
    """A trie-shaped regex for keyword terms written with joiners.

    Each term is split into words at whitespace and joiners; between two letters of a word
    zero or more joiners may appear, between two words one or more spaces or joiners.
    """
    sequences: list[list[str]] = []
    for term in terms:
        words = [w for w in _TERM_SPLIT.split(term) if w]
        if not words:
            sequences.append(list(term))  # a term made only of joiners stays literal
            continue
        seq: list[str] = []
        for wi, word in enumerate(words):
            if wi:
                seq.append(_SEP_TOKEN)
            for ci, ch in enumerate(word):
                if ci:
                    seq.append(_JOIN_TOKEN)
                seq.append(ch)
        sequences.append(seq)
    body = _emit_trie(_trie(sequences))
    if not whole_word:
        return f"(?:{body})"
    return f"{_WORD_BEFORE}(?:{body}){_WORD_AFTER}"


def _token_regex(token: str) -> str:
    if token == _JOIN_TOKEN:
        return f"{_JOIN}*"
    if token == _SEP_TOKEN:
        return f"[\\s{re.escape(JOINERS)}]+"
    return re.escape(token)


def _trie(sequences: Iterable[Sequence[str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for seq in sequences:
        node = root
        for token in seq:
            node = node.setdefault(token, {})
        node[""] = {}
    return root


def literal_detector(
    kind: str,
    literals: Sequence[str],
    *,
    view: str,
    whole_word: bool,
    priority: int = 0,
    validate: Validator | None = None,
) -> Detector:
    """Detector for a list of already-normalised literal strings (keywords, known secrets)."""
    body = trie_pattern(sorted(set(literals)))
    pattern = f"(?<!\\w)(?:{body})(?!\\w)" if whole_word else f"(?:{body})"
    return python_detector(kind, pattern, view=view, priority=priority, validate=validate)


def keyword_detector(terms: Sequence[str], *, whole_word: bool) -> Detector:
    """Detector for already-normalised (folded) keyword terms, joiners allowed."""
    pattern = joined_term_pattern(sorted(set(terms)), whole_word=whole_word)
    return python_detector("keyword", pattern, view="folded")


def re2_detector(
    kind: str,
    bounded: str,
    prefix_src: str,
    max_width: int,
    *,
    view: str,
    flags: str,
    validate: Validator | None = None,
) -> Detector:
    """Detector for an operator regex, matched by RE2 (linear time, no backtracking)."""
    compiled = compile_re2(flags + bounded)
    prefix = PrefixMatcher(flags + f"(?:{prefix_src})\\z")
    return Detector(
        kind=kind,
        view=view,
        search=compiled.search,
        finditer=compiled.finditer,
        prefix=prefix,
        max_width=max_width,
        lookbehind=2,
        validate=validate,
    )
