"""Prompt-injection phrase families: loading the per-language data files and compiling them.

Phrases live in ``injection_phrases/<language>.txt`` (one file per language), written in a
small template language described at the top of each file. Keeping them as data means a
new phrasing is a one-line change and a reviewer reads phrases, not a 10 KB regex.

One template compiles to four regex forms, all read on the ``folded`` view:

* ``plain``: words separated by whitespace (or markdown/underscore obfuscation). Every
  letter also accepts its leetspeak digits and symbols (``3`` for ``e``, ``0`` for ``o``,
  ``@`` for ``a`` ...) and, for accented letters, the bare letter (``regles`` for
  ``règles``), so leetspeak folding costs no extra pass over the text;
* ``reversed``: the template read backwards, letters reversed too, for text written
  right to left ("snoitcurtsni suoiverp lla erongi");
* ``rot13``: the literals ROT13-encoded ("vtaber nyy cerivbhf vafgehpgvbaf");
* ``compact``: no separator required between words, for letters that an attacker spaced
  out ("i g n o r e  a l l") once the separators are removed.

Every repetition is bounded, so the widths the streaming moderator needs stay finite.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PHRASE_DIR = Path(__file__).with_name("injection_phrases")
LANGUAGES = ("en", "de", "es", "fr", "it")
INTENTS = ("override", "extraction", "persona", "smuggling", "fake_role")

# Leetspeak substitutions accepted for each letter (folded text is lower case).
LEET = {
    "a": "4@",
    "b": "8",
    "e": "3",
    "g": "9",
    "i": "1!|",
    "l": "1|",
    "o": "0",
    "s": "5$",
    "t": "7+",
    "z": "2",
}
# Between words: whitespace or markdown/underscore obfuscation, after at most two
# punctuation marks ("responses: one ...", "tu so, als ...").
_SEP = {
    "plain": r"[,:;.!?]{0,2}[\s\-_*·]{1,4}",
    "rot13": r"[,:;.!?]{0,2}[\s\-_*·]{1,4}",
    "reversed": r"[\s\-_*·]{1,4}[,:;.!?]{0,2}",
    "compact": r"[,:;.!?]{0,2}[\s\-_*·]{0,4}",
}
_WORD = r"[^\s\-_*·]{1,24}"  # one arbitrary word (the ~N token)


class PhraseFileError(ValueError):
    """A phrase data file does not follow the template language."""


@dataclass(frozen=True)
class Phrase:
    """One phrase family member from a data file."""

    language: str
    intent: str
    weight: float
    template: str
    line: int


def _unaccent(word: str) -> str:
    return "".join(unicodedata.normalize("NFD", c)[0] for c in word)


@lru_cache(maxsize=4096)
def _letter(ch: str) -> str:
    """Regex for one template letter: itself, its unaccented base and its leet forms."""
    options = {ch}
    base = unicodedata.normalize("NFD", ch)[0]
    if base != ch and base.isascii():
        options.add(base)
    options.update(LEET.get(base, ""))
    if ch in "'’":
        options.update("'’")
    if len(options) == 1:
        return re.escape(ch)
    return "[" + "".join(re.escape(o) for o in sorted(options)) + "]"


def literal_width(text: str) -> int:
    """Longest text the regex of a literal alternative can match."""
    words = text.split()
    return sum(len(w) for w in words) + 4 * max(len(words) - 1, 0)


@lru_cache(maxsize=65536)
def _literal(text: str, mode: str) -> str:
    """Regex for a literal alternative (may hold several words and hyphens)."""
    words = text.casefold().split()
    if mode == "rot13":
        # ROT13 text is plain letters: no leetspeak, accents dropped before rotating.
        return _SEP[mode].join(
            re.escape(codecs.encode(_unaccent(w), "rot13")).replace("\\-", r"[\-\s]?")
            for w in words
        )
    if mode == "reversed":
        words = [w[::-1] for w in reversed(words)]
    out = []
    for word in words:
        parts = []
        for ch in word:
            if ch == "-":
                parts.append(r"[\-\s]?")
            else:
                parts.append(_letter(ch))
        out.append("".join(parts))
    return _SEP[mode].join(out)


def _split_top(template: str) -> list[str]:
    """Split a template at spaces that are not inside brackets."""
    tokens: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in template:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == " " and depth == 0:
            if cur:
                tokens.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        tokens.append("".join(cur))
    return tokens


class _Compiler:
    def __init__(self, lists: dict[str, list[str]], mode: str) -> None:
        self.lists = lists
        self.mode = mode

    def alternatives(self, body: str) -> str:
        return self._alternatives(body)[0]

    def _alternatives(self, body: str) -> tuple[str, int]:
        alts: list[str] = []
        for alt in (a.strip() for a in body.split("|")):
            if alt.startswith("@"):
                alts.extend(self._list(alt))
            elif alt:
                alts.append(alt)
        # Longest first, so "instructions" wins over "instruction" inside one group.
        ordered = sorted(set(alts), key=lambda a: (-len(a), a))
        rx = "(?:" + "|".join(_literal(a, self.mode) for a in ordered) + ")"
        return rx, max(literal_width(a) for a in ordered)

    def _list(self, ref: str) -> list[str]:
        name = ref[1:]
        if name not in self.lists:
            raise PhraseFileError(f"unknown list @{name}")
        return self.lists[name]

    def token(self, tok: str) -> tuple[str, str, int, int]:
        """(kind, regex, repeat, width): kind is req / opt / words / punct / neg."""
        if tok.endswith("s?") and len(tok) > 2:
            kind, rx, n, width = self.token(tok[:-2])
            return kind, f"{rx}s?", n, width + 1
        if tok in (":", ",", "="):
            return "punct", re.escape(tok), 1, 3
        if tok.startswith("~") and tok[1:].isdigit():
            return "words", _WORD, int(tok[1:]), 24
        if tok.startswith("!(") and tok.endswith(")"):
            return "neg", self.alternatives(tok[2:-1]), 0, 0
        m = re.fullmatch(r"\[(.*)\](?:\*(\d+))?", tok)
        if m:
            inner = m.group(1)
            if inner == ",":
                return "opt_punct", ",", 1, 3
            if inner in (":", "=", ":|=", "=|:"):
                return "opt_punct", f"[{re.escape(inner.replace('|', ''))}]", 1, 3
            return (
                "opt",
                *self._alternatives(inner)[:1],
                int(m.group(2) or 1),
                self._alternatives(inner)[1],
            )
        m = re.fullmatch(r"\((.*)\)(?:\*(\d+))?", tok)
        if m:
            rx, width = self._alternatives(m.group(1))
            if m.group(2):
                return "opt", rx, int(m.group(2)), width
            return "req", rx, 1, width
        if tok.startswith("@"):
            rx, width = self._alternatives(tok)
            return "req", rx, 1, width
        return "req", _literal(tok, self.mode), 1, literal_width(tok)

    def compile(self, template: str) -> tuple[str, int]:
        """Regex source of one template and the longest text it can match."""
        tokens = [self.token(t) for t in _split_top(template)]
        if self.mode == "reversed":
            tokens.reverse()
            tokens = [t for t in tokens if t[0] != "neg"]
        sep = _SEP[self.mode]
        out: list[str] = []
        total = 0
        need_sep = False  # a leading optional token carries its own separator
        for kind, rx, n, width in tokens:
            if kind in ("punct", "opt_punct"):
                out.append(rf"\s{{0,2}}{rx}" + ("?" if kind == "opt_punct" else ""))
                need_sep = True
            elif kind == "neg":
                out.append(rf"(?!{sep}{rx}(?![^\W_]))")
            elif kind in ("words", "opt"):
                if out:
                    out.append(f"(?:{sep}{rx}){{0,{n}}}")
                    need_sep = True
                else:
                    out.append(f"(?:{rx}{sep}){{0,{n}}}")
            else:
                out.append(f"{sep}{rx}" if need_sep else rx)
                need_sep = True
            total += n * (width + 6)
        return "".join(out), total


def parse_file(language: str, text: str) -> list[Phrase]:
    """Parse one phrase file (the lists are resolved at compile time)."""
    phrases = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or parts[0] not in INTENTS:
            raise PhraseFileError(f"{language}.txt:{lineno}: expected '<intent> <weight> ...'")
        try:
            weight = float(parts[1])
        except ValueError:
            raise PhraseFileError(f"{language}.txt:{lineno}: bad weight {parts[1]!r}") from None
        phrases.append(Phrase(language, parts[0], weight, parts[2], lineno))
    return phrases


def parse_lists(text: str) -> dict[str, list[str]]:
    """The ``@name = a | b`` lists of one phrase file."""
    lists = {}
    for raw in text.splitlines():
        m = re.fullmatch(r"@(\w+)\s*=\s*(.+)", raw.strip())
        if m:
            lists[m.group(1)] = [a.strip() for a in m.group(2).split("|") if a.strip()]
    return lists


@lru_cache(maxsize=8)
def load(language: str) -> tuple[tuple[Phrase, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """Phrases and lists of one language (cached: the files do not change at run time)."""
    text = (PHRASE_DIR / f"{language}.txt").read_text(encoding="utf-8")
    lists = parse_lists(text)
    return tuple(parse_file(language, text)), tuple((k, tuple(v)) for k, v in lists.items())


def compiled(languages: tuple[str, ...], mode: str) -> list[tuple[Phrase, str, int]]:
    """Every phrase of ``languages`` with its regex source in ``mode`` and its width."""
    out = []
    for language in languages:
        phrases, lists = load(language)
        compiler = _Compiler({k: list(v) for k, v in lists}, mode)
        for phrase in phrases:
            try:
                out.append((phrase, *compiler.compile(phrase.template)))
            except (PhraseFileError, re.error) as exc:
                raise PhraseFileError(f"{language}.txt:{phrase.line}: {exc}") from None
    return out
