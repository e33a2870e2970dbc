"""Text normalisation with an offset map back to the original text.

Two views are produced from the same original text:

* ``cased``: NFKC, invisible characters removed, homoglyphs mapped to Latin. Case is kept
  because secrets (``AKIA...``, base64) and IBANs are case-sensitive.
* ``folded``: the ``cased`` view case-folded. Keywords, prompt-injection heuristics and
  case-insensitive regexes match here.

Normalisation is applied per *segment*: a starter character (canonical combining class 0)
plus the combining marks that follow it. Because each segment is normalised on its own, the
normalisation of any suffix that starts at a segment boundary is exactly the matching suffix
of the whole normalisation. The streaming moderator relies on that to re-normalise only a
window of the stream. (This differs from whole-string NFKC only for exotic sequences such as
conjoining Hangul jamo, which are then simply not composed.)
"""

from __future__ import annotations

import re
import sys
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Lookalikes that NFKC leaves alone (Cyrillic/Greek letters that render like Latin ones).
# fmt: off
_HOMOGLYPH_PAIRS = {
    # Cyrillic
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ү": "y",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "α": "a",
    "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ϲ": "c",
    # Latin extensions that look like ASCII letters
    "ı": "i", "ɡ": "g", "ɑ": "a", "ȷ": "j",
}
# fmt: on
HOMOGLYPHS = str.maketrans(_HOMOGLYPH_PAIRS)

# Invisible characters that are not in category Cf but render as nothing.
_EXTRA_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u3164\uffa0\u180e" + "".join(chr(c) for c in range(0xFE00, 0xFE10))
)

# Runs of ASCII that are not followed by a combining mark can be copied in bulk; this keeps
# mostly-ASCII text fast. The combining-mark class is built lazily (it scans all code points).
_SEGMENT_RE: re.Pattern[str] | None = None


def _combining_class() -> str:
    """Return a regex character class body listing every code point with ccc != 0."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x300, sys.maxunicode + 1):
        if unicodedata.combining(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


def _segment_re() -> re.Pattern[str]:
    global _SEGMENT_RE
    if _SEGMENT_RE is None:
        comb = _combining_class()
        _SEGMENT_RE = re.compile(f"(?s)[\\x00-\\x7f]+(?![{comb}])|.[{comb}]*")
    return _SEGMENT_RE


def warm_up() -> None:
    """Build the lazily created Unicode tables (about 50 ms, once per process)."""
    _segment_re()


def is_starter(ch: str) -> bool:
    """True when ``ch`` begins a normalisation segment (canonical combining class 0)."""
    return unicodedata.combining(ch) == 0


@lru_cache(maxsize=65536)
def _normalise_segment(seg: str) -> tuple[str, str]:
    """Normalise one non-ASCII segment into its (cased, folded) forms."""
    nfkc = unicodedata.normalize("NFKC", seg)
    visible = "".join(
        c for c in nfkc if unicodedata.category(c) != "Cf" and c not in _EXTRA_INVISIBLE
    )
    cased = visible.translate(HOMOGLYPHS)
    folded = cased.casefold().translate(HOMOGLYPHS)
    return cased, folded


class SparseMap:
    """Offsets of a view built character by character, listing only the characters whose
    output is not exactly one character ("ß" -> "ss", a zero-width space -> "").

    Every other character maps to one character, so between two listed ones the view and
    the original text advance together.
    """

    __slots__ = ("views", "origs", "ends")

    def __init__(self, views: list[int], origs: list[int], ends: list[int]) -> None:
        self.views = views  # view offset where each listed character's output begins
        self.origs = origs  # that character's original offset
        self.ends = ends  # view offset where its output ends

    def start(self, j: int) -> int:
        """Original offset of the character that produced view character ``j``."""
        k = bisect_right(self.views, j) - 1
        if k < 0:
            return j
        if j < self.ends[k]:
            return self.origs[k]
        return self.origs[k] + 1 + j - self.ends[k]

    def count_before(self, orig_pos: int) -> int:
        """Number of view characters produced by original text before ``orig_pos``."""
        k = bisect_left(self.origs, orig_pos) - 1
        if k < 0:
            return orig_pos
        return self.ends[k] + orig_pos - self.origs[k] - 1


@dataclass(frozen=True)
class View:
    """A normalised text plus the map from each of its characters to original offsets.

    ``starts``/``ends`` list every character's segment (``None`` for the identity map and
    for a ``sparse`` one).
    """

    text: str
    starts: list[int] | None
    ends: list[int] | None
    orig_len: int
    sparse: SparseMap | None = None

    def span(self, a: int, b: int) -> tuple[int, int]:
        """Map the normalised span [a, b) (b > a) to an original [start, end)."""
        if self.sparse is not None:
            return self.sparse.start(a), self.sparse.start(b - 1) + 1
        if self.starts is None or self.ends is None:
            return a, b
        return self.starts[a], self.ends[b - 1]

    def orig_start(self, i: int) -> int:
        """Original offset where normalised character ``i`` begins (``len`` maps to the end)."""
        if i >= len(self.text):
            return self.orig_len
        if self.sparse is not None:
            return self.sparse.start(i)
        if self.starts is None:
            return i
        return self.starts[i]

    def count_before(self, orig_pos: int) -> int:
        """Number of normalised characters produced by original text before ``orig_pos``."""
        if self.sparse is not None:
            return self.sparse.count_before(orig_pos)
        if self.starts is None:
            return orig_pos
        return bisect_left(self.starts, orig_pos)


def normalise(text: str) -> tuple[View, View]:
    """Normalise ``text`` into its (cased, folded) views with offset maps."""
    n = len(text)
    if text.isascii():
        # NFKC, invisible removal and homoglyph mapping are all identities on ASCII.
        return View(text, None, None, n), View(text.lower(), None, None, n)
    views = _normalise_chars(text)
    return views if views is not None else _normalise_segments(text)


# More distinct changed characters than this: one str.translate beats a replace per one.
_MAX_REPLACES = 24


def _normalise_chars(text: str) -> tuple[View, View] | None:
    """Normalisation of a text without combining marks, or None if it has any.

    Without combining marks every segment is one character, so each distinct character is
    normalised once and the views are built with whole-string operations (replace,
    lower) instead of a Python loop over segments; offsets come as a ``SparseMap``.
    """
    cased_of: dict[str, str] = {}
    folded_of: dict[str, str] = {}
    kept: list[str] = []  # non-ASCII characters the folded view keeps as they are
    for ch in set(text):
        if ch.isascii():
            continue
        if unicodedata.combining(ch):
            return None
        c, f = _normalise_segment(ch)
        if c != ch:
            cased_of[ch] = c
        if f != ch:
            folded_of[ch] = f
        else:
            kept.append(ch)
    cased = _replace_all(text, cased_of, lower=False)
    folded = _replace_all(text, folded_of, lower=True, kept=kept)
    n = len(text)
    return (
        View(cased, None, None, n, _sparse_map(text, cased_of)),
        View(folded, None, None, n, _sparse_map(text, folded_of)),
    )


def _replace_all(text: str, table: dict[str, str], *, lower: bool, kept: Sequence[str] = ()) -> str:
    """``text`` with every character in ``table`` replaced (ASCII lower-cased if ``lower``).

    A chain of ``str.replace`` is only the same as a simultaneous replacement when no
    output contains a replaced character; ``str.lower`` after it is only the same as
    lower-casing the ASCII alone when it leaves every non-ASCII character in place (and
    then there is no final sigma, the one character it treats by context). Otherwise one
    ``str.translate`` does it exactly.
    """
    outputs = "".join(table.values())
    chain = len(table) <= _MAX_REPLACES and not any(ch in table for ch in outputs)
    if lower:
        chain = chain and outputs.lower() == outputs and all(ch.lower() == ch for ch in kept)
    if not chain:
        mapping: dict[int, str] = {ord(k): v for k, v in table.items()}
        if lower:
            for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
                mapping.setdefault(ord(ch), ch.lower())
        return text.translate(mapping)
    for old, new in table.items():
        text = text.replace(old, new)
    return text.lower() if lower else text


def _sparse_map(text: str, table: dict[str, str]) -> SparseMap | None:
    """Offsets for a view where ``table``'s characters became their values (None: identity)."""
    odd = [ch for ch, out in table.items() if len(out) != 1]
    if not odd:
        return None
    views: list[int] = []
    origs: list[int] = []
    ends: list[int] = []
    shift = 0  # view offset minus original offset after the characters seen so far
    for m in re.finditer("[" + "".join(map(re.escape, odd)) + "]", text):
        i = m.start()
        width = len(table[m.group()])
        views.append(i + shift)
        origs.append(i)
        shift += width - 1
        ends.append(i + 1 + shift)
    return SparseMap(views, origs, ends)


def _normalise_segments(text: str) -> tuple[View, View]:
    """Normalisation segment by segment (any text; used when it has combining marks)."""
    n = len(text)
    cased: list[str] = []
    folded: list[str] = []
    cs: list[int] = []
    ce: list[int] = []
    # While every segment folds to as many characters as its cased form (all but a few
    # letters such as "ß"), one pair of maps serves both views: half the list building,
    # which is most of the cost of normalising mixed text. Views never mutate their maps.
    fs: list[int] | None = None
    fe: list[int] | None = None
    for m in _segment_re().finditer(text):
        a, b = m.span()
        seg = m.group()
        if seg.isascii():
            cased.append(seg)
            folded.append(seg.lower())
            cs.extend(range(a, b))
            ce.extend(range(a + 1, b + 1))
            if fs is not None and fe is not None:
                fs.extend(range(a, b))
                fe.extend(range(a + 1, b + 1))
            continue
        c, f = _normalise_segment(seg)
        cased.append(c)
        folded.append(f)
        if fs is None and len(c) != len(f):
            fs, fe = cs.copy(), ce.copy()
        cs.extend([a] * len(c))
        ce.extend([b] * len(c))
        if fs is not None and fe is not None:
            fs.extend([a] * len(f))
            fe.extend([b] * len(f))
    if fs is None or fe is None:
        fs, fe = cs, ce
    return View("".join(cased), cs, ce, n), View("".join(folded), fs, fe, n)


def normalise_literal(value: str, folded: bool) -> str:
    """Normalise a literal (keyword, allow entry, known secret) the same way as text."""
    cased_view, folded_view = normalise(value)
    return folded_view.text if folded else cased_view.text


def last_segment_start(text: str) -> int:
    """Index where the last (possibly still growing) segment of ``text`` starts.

    A streamed text can only be normalised safely up to here: more combining marks may
    still arrive for the last starter.
    """
    i = len(text) - 1
    while i >= 0 and not is_starter(text[i]):
        i -= 1
    return max(i, 0)
