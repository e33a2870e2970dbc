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
from bisect import bisect_left
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


@dataclass(frozen=True)
class View:
    """A normalised text plus the map from each of its characters to original offsets.

    ``starts``/``ends`` are ``None`` for the identity map (pure ASCII input).
    """

    text: str
    starts: list[int] | None
    ends: list[int] | None
    orig_len: int

    def span(self, a: int, b: int) -> tuple[int, int]:
        """Map the normalised span [a, b) (b > a) to an original [start, end)."""
        if self.starts is None or self.ends is None:
            return a, b
        return self.starts[a], self.ends[b - 1]

    def orig_start(self, i: int) -> int:
        """Original offset where normalised character ``i`` begins (``len`` maps to the end)."""
        if self.starts is None:
            return i
        return self.starts[i] if i < len(self.starts) else self.orig_len

    def count_before(self, orig_pos: int) -> int:
        """Number of normalised characters produced by original text before ``orig_pos``."""
        if self.starts is None:
            return orig_pos
        return bisect_left(self.starts, orig_pos)


def normalise(text: str) -> tuple[View, View]:
    """Normalise ``text`` into its (cased, folded) views with offset maps."""
    n = len(text)
    if text.isascii():
        # NFKC, invisible removal and homoglyph mapping are all identities on ASCII.
        return View(text, None, None, n), View(text.lower(), None, None, n)
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
