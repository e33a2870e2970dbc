"""Regex analysis used for safe streaming: bounding, widths and prefix languages.

Patterns are parsed with Python's own regex parser (``re._parser``) and re-emitted in a
syntax both RE2 and Python accept. Two things are derived from the parse tree:

* a *bounded* pattern, where ``*``, ``+`` and ``{n,}`` are capped so every match has a
  known maximum length (operator regexes; RE2 caps repetition at 1000);
* the *prefix language* ``P``: every string that could still grow into a match (plus every
  complete match followed by less than the lookahead the pattern inspects). A streamed
  position ``i`` is undecided only while ``text[i:end]`` is in ``P``; everything before the
  leftmost such position can be decided now exactly as in a whole-text scan.

``P`` only has to be a superset of the true prefix language, so character classes are
widened to RE2-safe supersets and lookbehinds are dropped (they read text that is already
known). ``P`` is matched with RE2, so checking it is linear-time even for operator input.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import re2
from re2 import _re2

# The stdlib's regex parser (no public API, no stubs): it measures a pattern's width.
C: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")

MAXREPEAT = C.MAXREPEAT
RE2_MAX_REPEAT = 1000


class RegexAnalysisError(ValueError):
    """The pattern uses syntax the engine cannot analyse for safe streaming."""


def re2_options() -> re2.Options:
    """RE2 options: no logging of errors to stderr (messages are returned to the caller)."""
    options = re2.Options()
    options.log_errors = False
    return options


# DFA memory for the built-in patterns' prefix languages (trusted, compiled once per
# process). With RE2's default 8 MB the DFAs of the widest ones (hex and spaced-letter
# runs, up to 1000 repetitions) run out of memory and RE2 falls back to its NFA: 18 and
# 100 ms for 1 300 characters instead of microseconds. Memory is only used as states are
# built; operator regexes keep the default.
BUILTIN_DFA_MEM = 64 << 20


def compile_re2(pattern: str, max_mem: int | None = None) -> Any:
    """Compile ``pattern`` with RE2, raising ``RegexAnalysisError`` with RE2's message."""
    options = re2_options()
    if max_mem is not None:
        options.max_mem = max_mem
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        msg = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexAnalysisError(msg) from None


class PrefixMatcher:
    """A prefix-language regex ``(?:P)\\z`` searched in text that is already UTF-8.

    A stream step asks every detector's ``P`` for its leftmost suffix. The ``re2`` module's
    ``search`` re-encodes the whole text and converts offsets in Python on every call,
    which was most of a chunk's cost; here the step encodes each view once and the
    compiled RE2 object is called directly with byte offsets.
    """

    __slots__ = ("_regexp", "_warm")

    def __init__(self, source: str, max_mem: int | None = None) -> None:
        # The re2 module keeps the compiled RE2 object (pybind11) in ``_regexp``.
        self._regexp = compile_re2(source, max_mem)._regexp
        self._warm = False

    def warm(self) -> None:
        """Build the DFA states ordinary streamed text needs (once; a few ms at most for
        the built-in detectors of redact/block rules, which search on every chunk)."""
        # RE2 builds its DFA states lazily, on the text it meets. Searching the way a
        # stream does (growing text, from near its end) over ordinary text builds them
        # here instead of during the first chunks of a user's stream.
        if self._warm:
            return
        self._warm = True
        data = STREAM_WARM_TEXT.encode()
        for end in range(1, len(data)):
            if data[end] == 0x20:
                self.leftmost(data[:end], max(0, end - 48))

    def leftmost(self, data: bytes, pos: int) -> int:
        """Byte offset of the leftmost ``i >= pos`` with ``data[i:]`` in ``P``."""
        # P contains the empty string, so the search always succeeds (at the latest at the
        # end of the text).
        return int(self._regexp.Match(_UNANCHORED, data, pos, len(data))[0][0])


_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
# Prose in the five languages with the digits, punctuation and token shapes streams carry.
STREAM_WARM_TEXT = (
    "The agent ran the tool and the model wrote a response for the request; see the policy "
    "(v2.1, 2024-05-01 10:30) at https://example.com/a?b=c or mail ops.team@example.org, "
    "call +1 (555) 010-9999 or 020 7946 0000, ref DE00 1234 5678, id 4000-1234, "
    "key_id=AKIAABCDEFGHIJKLMNOP ghp_0123456789abcdefghijKLMNOPQRSTUVWXYZ sk-ant-x sk-proj- "
    "eyJhbGciOi.x xoxb-1 sk_test_1 AIzaX -----BEGIN PUBLIC KEY----- 10.0.0.1 fe80::1 "
    "aws_secret_access_key = ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123 123-45-678 quick jumps. "
    "Der Bericht über die Straße ist fertig; el niño pidió más café; déjà vu, garçon; "
    "l'année è già finita, señor. Naïve “quotes” — and ‘more’… ok!\n"
)


class Utf8Text:
    """A text's UTF-8 encoding with offset conversion (identity when it is ASCII).

    Conversions are remembered: a step's detectors mostly ask about the same positions
    (their chains wait at the same place, and most prefixes end at the end of the text).
    """

    __slots__ = ("data", "ascii", "_to_byte", "_to_char")

    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.ascii = len(self.data) == len(text)
        self._to_byte = {len(text): len(self.data)}
        self._to_char = {len(self.data): len(text)}

    def byte_offset(self, i: int) -> int:
        """Byte offset of character ``i``."""
        if self.ascii:
            return i
        b = self._to_byte.get(i)
        if b is None:
            b = self._to_byte[i] = int(_re2.CharLenToBytes(self.data, 0, i))
        return b

    def char_offset(self, b: int) -> int:
        """Character offset of byte ``b`` (a character boundary)."""
        if self.ascii:
            return b
        i = self._to_char.get(b)
        if i is None:
            i = self._to_char[b] = int(_re2.BytesToCharLen(self.data, 0, b))
        return i


_CATEGORY_EXACT = {
    C.CATEGORY_DIGIT: r"\d",
    C.CATEGORY_NOT_DIGIT: r"\D",
    C.CATEGORY_SPACE: r"\s",
    C.CATEGORY_NOT_SPACE: r"\S",
    C.CATEGORY_WORD: r"\w",
    C.CATEGORY_NOT_WORD: r"\W",
}
# Supersets of Python's Unicode-aware categories *and* RE2's ASCII ones, for P.
_CATEGORY_WIDE = {
    C.CATEGORY_DIGIT: r"\pN",
    C.CATEGORY_SPACE: r"\s\pZ\x{85}\x{1c}-\x{1f}",
    C.CATEGORY_WORD: r"\pL\pN\pM_",
}
_AT = {
    C.AT_BEGINNING: "^",
    C.AT_END: "$",
    C.AT_BOUNDARY: r"\b",
    C.AT_NON_BOUNDARY: r"\B",
}
_FLAG_LETTERS = {re.IGNORECASE: "i", re.MULTILINE: "m", re.DOTALL: "s"}


def _esc(cp: int, placeholders: dict[int, str]) -> str:
    """Escape one literal code point for RE2 (placeholders stand for RE2-only classes)."""
    if cp in placeholders:
        return placeholders[cp]
    ch = chr(cp)
    if ch.isalnum() or ch == "_":
        return ch
    return f"\\x{{{cp:x}}}"


class Emitter:
    """Re-emits a parsed pattern either exactly (bounded) or as its prefix language."""

    def __init__(self, bound: int | None, placeholders: dict[int, str] | None = None) -> None:
        self.bound = bound
        self.placeholders = placeholders or {}
        # RE2 limits the *product* of nested counted repeats to 1000; P tracks it here.
        self._outer = 1

    # --- exact emission -------------------------------------------------------------
    def seq(self, items: Any) -> str:
        """Emit a sequence of parse items as an RE2 pattern."""
        return "".join(self.item(op, av) for op, av in items)

    def item(self, op: Any, av: Any) -> str:
        """Emit one parse item."""
        if op is C.LITERAL:
            return _esc(av, self.placeholders)
        if op is C.NOT_LITERAL:
            return f"[^{_esc(av, self.placeholders)}]"
        if op is C.ANY:
            return "."
        if op is C.IN:
            return self.klass(av, wide=False)
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(b) for b in av[1]) + ")"
        if op is C.SUBPATTERN:
            return self._group(av, self.seq(av[3]))
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            if hi == MAXREPEAT:
                if self.bound is None:
                    raise RegexAnalysisError("unbounded repetition")
                hi = self.bound
            lazy = "?" if op is C.MIN_REPEAT else ""
            return f"(?:{self.seq(sub)}){{{lo},{max(hi, lo)}}}{lazy}"
        if op is C.AT and av in _AT:
            return _AT[av]
        raise RegexAnalysisError(_unsupported(op, av))

    def _group(self, av: Any, body: str) -> str:
        add, remove = av[1], av[2]
        on = "".join(v for k, v in _FLAG_LETTERS.items() if add & k)
        off = "".join(v for k, v in _FLAG_LETTERS.items() if remove & k)
        if (add or remove) and not (on or off):
            raise RegexAnalysisError("unsupported inline flag")
        flags = on + (f"-{off}" if off else "")
        return f"(?{flags}:{body})"

    def klass(self, items: Any, wide: bool) -> str:
        """Emit a character class; ``wide`` widens categories to safe supersets."""
        negate = bool(items) and items[0][0] is C.NEGATE
        body: list[str] = []
        for op, av in items[1:] if negate else items:
            if op is C.LITERAL:
                body.append(_esc(av, self.placeholders))
            elif op is C.RANGE:
                body.append(f"{_esc(av[0], {})}-{_esc(av[1], {})}")
            elif op is C.CATEGORY:
                if wide and (negate or av not in _CATEGORY_WIDE):
                    return r"[\s\S]"  # a widened negation would narrow: match anything
                body.append(_CATEGORY_WIDE[av] if wide else _CATEGORY_EXACT[av])
            else:
                raise RegexAnalysisError(_unsupported(op, av))
        return "[" + ("^" if negate else "") + "".join(body) + "]"

    # --- prefix language --------------------------------------------------------------
    def prefix(self, items: list[Any]) -> str:
        """Regex for every prefix of every match of ``items`` (including "" and full matches).

        P(a1 a2 ... an) = P(a1) | a1 P(a2 ... an), built right to left.
        """
        acc = ""  # P of the empty sequence: just the empty string
        for op, av in reversed(list(items)):
            if op in (C.ASSERT, C.ASSERT_NOT):
                direction, sub = av
                if direction < 0:
                    continue  # lookbehind reads known text before the match
                width = _max_width(sub, self.bound)
                if width > RE2_MAX_REPEAT:
                    raise RegexAnalysisError("lookahead too wide to analyse")
                # The text after this point may be a partial lookahead context.
                acc = f"(?:(?s:.{{0,{max(width - 1, 0)}}})|{acc or '(?:)'})"
                continue
            if op is C.AT:
                continue  # zero-width; reads at most one char either side
            full = self.prefix_full(op, av)
            part = self.prefix_item(op, av)
            acc = f"(?:{part}|{full}{acc or '(?:)'})" if acc else part
        return acc or "(?:)"

    def prefix_full(self, op: Any, av: Any) -> str:
        """A superset of the complete matches of one item (used inside P)."""
        if op is C.IN:
            return self.klass(av, wide=True)
        if op is C.NOT_LITERAL:
            return r"[\s\S]"
        if op is C.ANY:
            return r"[\s\S]"
        if op is C.BRANCH:
            return "(?:" + "|".join(self.full_seq(b) for b in av[1]) + ")"
        if op is C.SUBPATTERN:
            return self._group(av, self.full_seq(av[3]))
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            return self._repeat(lambda: self.full_seq(sub), lo, hi)
        if op is C.LITERAL:
            return _esc(av, self.placeholders)
        raise RegexAnalysisError(_unsupported(op, av))

    def full_seq(self, items: Any) -> str:
        """Superset of the full matches of a sequence, assertions dropped."""
        out = []
        for op, av in items:
            if op in (C.ASSERT, C.ASSERT_NOT, C.AT):
                continue
            out.append(self.prefix_full(op, av))
        return "".join(out)

    def gate_seq(self, items: Any, cap: int) -> tuple[str, bool]:
        """A regex for a leading part of every match of ``items``, and whether it is all
        of it: every match starts with a match of the regex (see ``Gate``).

        Assertions are dropped and classes widened as in ``full_seq``; at a repetition
        wider than ``cap`` (a DFA needs a state per count) the regex stops, after at
        most ``cap`` repetitions: what follows is only a longer part of the same match.
        """
        out: list[str] = []
        for op, av in items:
            if op in (C.ASSERT, C.ASSERT_NOT, C.AT):
                continue
            if op is C.BRANCH:
                alts = [self.gate_seq(b, cap) for b in av[1]]
                out.append("(?:" + "|".join(rx for rx, _whole in alts) + ")")
                if not all(whole for _rx, whole in alts):
                    return "".join(out), False
            elif op is C.SUBPATTERN:
                rx, whole = self.gate_seq(av[3], cap)
                out.append(self._group(av, rx))
                if not whole:
                    return "".join(out), False
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
                lo, hi, sub = av
                rx, whole = self.gate_seq(sub, cap)
                if not whole or hi == MAXREPEAT or hi > cap:
                    if lo and whole:
                        out.append(f"(?:{rx}){{{min(lo, cap)},{cap}}}")
                    elif lo:
                        out.append(f"(?:{rx})")
                    return "".join(out), False
                out.append(f"(?:{rx}){{{lo},{hi}}}")
            else:
                out.append(self.prefix_full(op, av))
        return "".join(out), True

    def prefix_item(self, op: Any, av: Any) -> str:
        """Prefix language of a single item."""
        if op in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN):
            return f"(?:{self.prefix_full(op, av)})?"
        if op is C.BRANCH:
            return "(?:" + "|".join(self.prefix(list(b)) for b in av[1]) + ")"
        if op is C.SUBPATTERN:
            return self._group(av, self.prefix(list(av[3])))
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            # P(x{lo,hi}) = x{0,hi-1} P(x); lower bounds only narrow, so drop them.
            head = self._repeat(lambda: self.full_seq(sub), 0, hi if hi == MAXREPEAT else hi - 1)
            return f"(?:{head}{self.prefix(list(sub))})"
        raise RegexAnalysisError(_unsupported(op, av))

    def _repeat(self, body: Any, lo: int, hi: int) -> str:
        """Emit a superset of ``body{0,hi}`` that RE2 accepts.

        Counts above RE2's nested-product budget are split into a concatenation of
        smaller repeats (same language); hopeless cases become an open repeat (superset).
        """
        if hi == MAXREPEAT and self.bound is not None:
            hi = self.bound  # operator regexes are bounded to this many repetitions
        if hi <= 0:
            return ""
        if hi == MAXREPEAT:
            return f"(?:{body()})*"
        budget = max(RE2_MAX_REPEAT // self._outer, 1)
        pieces = -(-hi // budget)
        if pieces > 16:
            return f"(?:{body()})*"
        saved = self._outer
        self._outer *= min(hi, budget)
        try:
            inner = body()
        finally:
            self._outer = saved
        out, left = [], hi
        while left > 0:
            n = min(left, budget)
            out.append(f"(?:{inner}){{0,{n}}}")
            left -= n
        return "".join(out)


def _unsupported(op: Any, av: Any) -> str:
    names = {
        C.GROUPREF: "back-references",
        C.ASSERT: "lookaround",
        C.ASSERT_NOT: "lookaround",
        C.AT: "\\A / \\Z anchors (use ^ and $, which match at line boundaries)",
        C.ATOMIC_GROUP: "atomic groups",
        C.POSSESSIVE_REPEAT: "possessive quantifiers",
        C.GROUPREF_EXISTS: "conditional groups",
    }
    return f"unsupported regex feature: {names.get(op, str(op).lower())}"


def _max_width(items: Any, bound: int | None) -> int:
    """Maximum match width of parsed items, with open repeats capped at ``bound``."""
    total = 0
    for op, av in items:
        if op in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN):
            total += 1
        elif op is C.BRANCH:
            total += max(_max_width(b, bound) for b in av[1])
        elif op is C.SUBPATTERN:
            total += _max_width(av[3], bound)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            if hi == MAXREPEAT:
                hi = bound if bound is not None else 1 << 30
            total += hi * _max_width(sub, bound)
        elif op is C.ATOMIC_GROUP:
            total += _max_width(av, bound)
    return total


def _min_width(items: Any) -> int:
    lo, _hi = sre_parse.SubPattern(sre_parse.State(), list(items)).getwidth()
    return int(lo)


# RE2-only syntax that Python's parser rejects; swapped for private-use placeholders.
_RE2_ONLY = re.compile(r"\\[pP](?:\{[^}]*\}|[A-Za-z])|\[:\^?[a-z]+:\]|\\\\|\\.")


def _swap_re2_only(pattern: str) -> tuple[str, dict[int, str]]:
    placeholders: dict[int, str] = {}

    def repl(m: re.Match[str]) -> str:
        tok = m.group()
        if tok.startswith("\\") and tok[1] not in "pP":
            if tok[1] in "zAQEC":
                raise RegexAnalysisError(f"unsupported escape {tok} (use ^ and $ for anchors)")
            return tok
        cp = 0xE000 + len(placeholders)
        placeholders[cp] = tok
        return chr(cp)

    return _RE2_ONLY.sub(repl, pattern), placeholders


class Analysis:
    """Result of analysing an operator regex: bounded RE2 source, prefix regex and width."""

    def __init__(self, bounded: str, prefix: str, max_width: int, min_width: int) -> None:
        self.bounded = bounded
        self.prefix = prefix
        self.max_width = max_width
        self.min_width = min_width


def analyse(pattern: str, flags: int, bound: int) -> Analysis:
    """Parse ``pattern`` and derive its bounded form, prefix language and widths."""
    swapped, placeholders = _swap_re2_only(pattern)
    try:
        parsed = sre_parse.parse(swapped, flags)
    except re.error as exc:
        raise RegexAnalysisError(f"cannot parse pattern: {exc}") from None
    emitter = Emitter(bound, placeholders)
    items = list(parsed)
    bounded = emitter.seq(items)
    prefix = emitter.prefix(items)
    return Analysis(bounded, prefix, _max_width(items, bound), _min_width(items))


def prefix_regex_for_python(pattern: str, flags: int = 0) -> tuple[str, int]:
    """Prefix language (RE2 source) and max width for a built-in Python pattern."""
    parsed = sre_parse.parse(pattern, flags)
    emitter = Emitter(None)
    return emitter.prefix(list(parsed)), _max_width(list(parsed), None)


GATE_CAP = 64


class Gate:
    """Where a built-in pattern's next match can start, found by RE2 in UTF-8 text.

    Python's ``re`` tries every position of a text for a pattern that begins with a
    lookbehind or a repetition (most detectors), about 0.4 ms per 32,000 characters even
    when nothing matches. The gate regex matches a leading part of every match with the
    assertions left out (``Emitter.gate_seq``), so the leftmost gate match at or after
    ``pos`` is at or before the leftmost real match, and no real match starts between
    ``pos`` and it: searching from there gives the same match. RE2 finds it in one DFA
    pass and finds nothing, quickly, in the many texts where a detector has no match.
    """

    __slots__ = ("_regexp",)

    def __init__(self, source: str) -> None:
        self._regexp = compile_re2(source)._regexp

    def matches(self, search: Any, text: str, utf8: Utf8Text, pos: int) -> Any:
        """The chain of ``search`` matches from ``pos`` (as ``finditer`` for patterns
        that never match the empty string)."""
        cursor = _Cursor(utf8)
        data = utf8.data
        size = len(data)
        while True:
            start = self._regexp.Match(_UNANCHORED, data, cursor.byte_offset(pos), size)[0][0]
            if start < 0:
                return
            m = search(text, cursor.char_offset(start))
            if m is None:
                return
            yield m
            pos = m.end()


class _Cursor:
    """Offset conversion for positions that only move forward (linear over a chain)."""

    __slots__ = ("utf8", "char", "byte")

    def __init__(self, utf8: Utf8Text) -> None:
        self.utf8 = utf8
        self.char = 0
        self.byte = 0

    def byte_offset(self, i: int) -> int:
        if self.utf8.ascii:
            return i
        if i < self.char:
            self.char = self.byte = 0
        self.byte += int(_re2.CharLenToBytes(self.utf8.data, self.byte, i - self.char))
        self.char = i
        return self.byte

    def char_offset(self, b: int) -> int:
        if self.utf8.ascii:
            return b
        if b < self.byte:
            self.char = self.byte = 0
        self.char += int(_re2.BytesToCharLen(self.utf8.data, self.byte, b))
        self.byte = b
        return self.char


def gate_for_python(pattern: str, flags: int = 0) -> Gate | None:
    """The gate of a built-in Python pattern; None if it could match the empty string
    (``finditer`` then differs from a chain of searches) or RE2 cannot take it."""
    parsed = sre_parse.parse(pattern, flags)
    if _min_width(list(parsed)) == 0:
        return None
    source, _whole = Emitter(None).gate_seq(list(parsed), GATE_CAP)
    try:
        return Gate(flag_prefix(flags | parsed.state.flags) + source)
    except RegexAnalysisError:
        return None


def flag_prefix(flags: int) -> str:
    """Inline-flag prefix equivalent to Python ``flags`` (only i, m, s)."""
    letters = "".join(v for k, v in _FLAG_LETTERS.items() if flags & k)
    return f"(?{letters})" if letters else ""
