"""Layered prompt-injection detection with a scoring rule.

Layers (each can be switched on or off with the rule's ``layers`` parameter):

1. ``phrases``: phrase families per intent (override, extraction, persona, smuggling, fake
   roles and delimiters) in English, German, Spanish, French and Italian, loaded from the
   data files in ``injection_phrases/`` (see ``phrases``). Read on the ``folded`` view, so
   invisible characters, Cyrillic look-alikes and full-width forms are already gone;
   leetspeak is folded by the compiled letter classes.
2. ``views``: the same phrases read in other views of the text: reversed text, ROT13,
   letters spaced out by single spaces or separators ("i g n o r e", "i.g.n.o.r.e") once
   joined, and base64 and hex segments once decoded (each segment at most
   ``MAX_DECODED_SEGMENT`` characters, only when at least 85 % of the decoded text is
   printable).
3. ``structure``: signals that do not depend on a language: chat-template tokens
   (``<|im_start|>``, ``[INST]``, ``<<SYS>>``), a fake system or admin turn at a line start
   followed by an order, and, only in ``tool_output`` (content that should be data), a
   ``"role": "system"`` inside tool JSON, hidden-text tricks (``display:none``, zero font
   size, white text, HTML comments) that carry an order, and links that put conversation
   data into a URL (markdown images or URLs with ``{conversation}`` placeholders).

Each match has a weight. It becomes a finding when its score reaches the rule's
``threshold`` (default 1.0):

    score = weight
            - 0.45 per distinct "discussion marker" in the 200 chars before it (max 2)
            - 0.2 more when the match is directly quoted and a marker is present

Discussion markers are words that signal text *about* prompt injection rather than an
attack ("prompt injection", "for example", "attackers", "zum Beispiel", "par exemple",
"por ejemplo", "ad esempio", ...). The damping applies to every layer, so a security
question that quotes a base64 attack or a chat-template token stays unflagged. The
trade-off is documented in docs/moderation.md: an attacker who wraps the attack in such
words can lower its score.

Phrase unions are matched with RE2 (a DFA: linear, about 1 ms per 100 KB once warm); the
Python form of the phrase that matched is only run on the match, to learn its weight.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from functools import lru_cache
from typing import Any

import re2

from .detectors import Detector, python_detector
from .injection_score import CONTEXT_CHARS, score
from .normalize import normalise
from .phrases import LANGUAGES, Phrase, compiled
from .regex_tools import re2_options

LAYERS = ("phrases", "views", "structure")
MAX_DECODED_SEGMENT = 2000  # characters of base64/hex read per segment
_BOUNDARY = r"(?<![^\W_])"


def _union_options() -> re2.Options:
    # The phrase unions' DFA needs more than RE2's default 8 MB to stay a DFA.
    options = re2_options()
    options.max_mem = 64 << 20
    return options


# Ordinary prose in the five languages, with digits and markup: scanning it once when a
# phrase set is built makes RE2 build its DFA states then, not during a user's first scan.
_WARM_TEXT = (
    "The quick brown fox jumps over the lazy dog; please summarise the report, ignore the "
    "typos and show me the results for 2024-05-01 at 10:30. Der schnelle braune Fuchs "
    "springt über den faulen Hund, bitte zeige mir die Ergebnisse. El rápido zorro marrón "
    "salta sobre el perro perezoso; muéstrame las instrucciones del manual. Le renard brun "
    "saute par-dessus le chien paresseux, montre-moi les règles du jeu. La volpe marrone "
    "salta sopra il cane pigro; mostrami le istruzioni e dimmi il tuo nome. "
    '<div class=\'x\'>{"id": 42, "name": "value"}</div> https://example.com/a?b=c '
    "You are now logged in. From now on you will receive the newsletter. Assistant: hello."
) * 2


class PhraseMatch:
    """A phrase match: the span, plus the phrase that matched (for its weight)."""

    __slots__ = ("_start", "_end", "_text", "phrase")

    def __init__(self, text: str, start: int, end: int, phrase: Phrase) -> None:
        self._text = text
        self._start = start
        self._end = end
        self.phrase = phrase

    def start(self) -> int:
        """Start offset."""
        return self._start

    def end(self) -> int:
        """End offset."""
        return self._end

    def span(self) -> tuple[int, int]:
        """(start, end)."""
        return self._start, self._end

    def group(self) -> str:
        """The matched text."""
        return self._text[self._start : self._end]


class PhraseSet:
    """All phrases of some languages in one mode.

    One RE2 union per language, each phrase a capture group: a single union of all five
    languages outgrows RE2's DFA memory and falls back to its (50x slower) NFA, while five
    per-language unions stay DFAs (about 3 ms per 32 KB together, once warm).
    """

    def __init__(
        self, languages: tuple[str, ...], mode: str, intents: tuple[str, ...] | None = None
    ) -> None:
        entries = [
            e for e in compiled(languages, mode) if intents is None or e[0].intent in intents
        ]
        self.max_width = max(w for _p, _rx, w in entries) + 8
        self.unions: list[tuple[Any, list[Phrase], dict[int, str]]] = []
        for language in languages:
            mine = [(p, rx) for p, rx, _w in entries if p.language == language]
            if not mine:
                continue
            # RE2 has no lookahead: "!(...)" guards are dropped here and checked with
            # Python's re on the (rare) matches of the phrases that have one.
            groups = "|".join(f"({_strip_lookahead(rx) if '(?!' in rx else rx})" for _p, rx in mine)
            # No \b: RE2's is ASCII-only and would miss "übersetze", "épelle"; the word
            # boundary is checked in Python on each match instead.
            union = re2.compile(f"(?:{groups})", _union_options())
            guards = {i: rx for i, (_p, rx) in enumerate(mine) if "(?!" in rx}
            self.unions.append((union, [p for p, _rx in mine], guards))
        self._guards: dict[str, re.Pattern[str]] = {}
        # Per thread: the last search of each union on the current text. A chain asks
        # for the next match again and again; a union without one would rescan to the end
        # of the text each time (quadratic) without this.
        self._local = threading.local()
        for union, _phrases, _guards in self.unions:
            union.search(_WARM_TEXT)  # build the DFA states ordinary text needs, now

    def _next(self, k: int, union: Any, text: str, pos: int) -> Any:
        """Leftmost match of union ``k`` at or after ``pos``.

        pyre2 re-encodes the whole text on every ``search`` call, so a chain of searches
        over a long text would be quadratic. One ``finditer`` per union and text encodes
        it once; it is advanced as the chain moves on, and only a position inside an
        already-returned match (rare: overlapping matches of two languages, or a match
        rejected at a word boundary) falls back to a fresh ``finditer`` from there.
        """
        cache: tuple[str, dict[int, tuple[Any, Any, int]]] | None
        cache = getattr(self._local, "cache", None)
        if cache is None or cache[0] is not text:
            cache = (text, {})
            self._local.cache = cache
        entry = cache[1].get(k)
        if entry is not None and pos >= entry[2]:
            it, cur, _frm = entry
            while cur is not None and cur.end() <= pos and cur.start() < pos:
                cur = next(it, None)
            if cur is None or cur.start() >= pos:
                cache[1][k] = (it, cur, pos)
                return cur
        it = union.finditer(text, pos)
        cur = next(it, None)
        cache[1][k] = (it, cur, pos)
        return cur

    def _confirmed(self, text: str, m: Any, guards: dict[int, str]) -> bool:
        start = m.start()
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            return False
        index = m.lastindex - 1
        if index not in guards:
            return True
        rx = guards[index]
        if rx not in self._guards:
            self._guards[rx] = re.compile(f"{_BOUNDARY}(?:{rx})")
        return self._guards[rx].match(text, m.start()) is not None

    def search(self, text: str, pos: int = 0) -> PhraseMatch | None:
        """Leftmost (then longest) phrase match at or after ``pos``."""
        best: PhraseMatch | None = None
        for k, (union, phrases, guards) in enumerate(self.unions):
            start = pos
            while True:
                m = self._next(k, union, text, start)
                if m is None or (best is not None and m.start() > best.start()):
                    break
                if not self._confirmed(text, m, guards):
                    start = m.start() + 1
                    continue
                if best is None or m.start() < best.start() or m.end() > best.end():
                    best = PhraseMatch(text, m.start(), m.end(), phrases[m.lastindex - 1])
                break
        return best

    def finditer(self, text: str, pos: int = 0) -> Any:
        """Chain of leftmost matches, like ``re.finditer``."""
        while True:
            m = self.search(text, pos)
            if m is None:
                return
            yield m
            pos = max(m.end(), m.start() + 1)

    def best_in(self, text: str, threshold: float) -> bool:
        """True when some phrase in ``text`` scores at least ``threshold``."""
        for m in self.finditer(text):
            if score(text, m.start(), m.end(), m.phrase.weight) >= threshold:
                return True
        return False


def _strip_lookahead(rx: str) -> str:
    """Remove the ``(?!...)`` guards our compiler emits (balanced parentheses)."""
    out, i = [], 0
    while i < len(rx):
        if rx.startswith("(?!", i):
            depth = 0
            j = i
            while j < len(rx):
                if rx[j] == "\\":
                    j += 2
                    continue
                if rx[j] == "(":
                    depth += 1
                elif rx[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            continue
        out.append(rx[i])
        i += 1
    return "".join(out)


# Reversed and ROT13 text is read for the intents such text is used for in practice;
# the full set in those views would double the compile time for little recall.
VIEW_INTENTS = ("override", "extraction", "persona")


@lru_cache(maxsize=16)
def phrase_set(languages: tuple[str, ...], mode: str) -> PhraseSet:
    """Shared phrase sets (compiling one takes 0.2-0.7 s; matching is read-only)."""
    return PhraseSet(languages, mode, VIEW_INTENTS if mode in ("reversed", "rot13") else None)


def _union_detector(
    kind: str, pset: PhraseSet, threshold: float, priority: int, view: str = "folded"
) -> Detector:
    def validate(text: str, m: Any) -> int | None:
        if score(text, m.start(), m.end(), m.phrase.weight) >= threshold:
            return int(m.end())
        return None

    # The exact prefix language of 240 phrases takes a minute to compile in RE2; "the last
    # max_width characters" is a superset, which is all streaming needs (prefix=None, see
    # scanner). A flag rule holds nothing back anyway; a block rule holds max_width chars.
    return Detector(
        kind=kind,
        view=view,
        search=pset.search,
        finditer=pset.finditer,
        prefix=None,
        max_width=pset.max_width,
        lookbehind=CONTEXT_CHARS + 2,
        validate=validate,
        priority=priority,
    )


# --- views --------------------------------------------------------------------------
_SPACED = r"(?<![^\W_])(?:[^\W\d_][ .\-_*·|/+]{1,3}){5,300}[^\W\d_](?![^\W_])"  # i g n o r e ...
_SPACED_SEP = re.compile(r"[ .\-_*·|/+]")
_BASE64 = r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{16,2000}={0,2}(?![A-Za-z0-9+/=_\-])"
_HEX = r"(?<![0-9a-fx\\])(?:(?:\\x|0x)?[0-9a-f]{2}[\s:,]?){10,1000}(?![0-9a-f])"


def _printable(decoded: bytes) -> str | None:
    text = decoded.decode("utf-8", errors="replace")
    if len(text) < 8:
        return None
    good = sum(1 for c in text if c.isprintable() or c in "\n\t")
    return text if good >= 0.85 * len(text) else None


def _decode_base64(raw: str) -> str | None:
    raw = raw[:MAX_DECODED_SEGMENT].rstrip("=")
    padded = raw + "=" * (-len(raw) % 4)
    try:
        if "-" in raw or "_" in raw:
            return _printable(base64.urlsafe_b64decode(padded))
        return _printable(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        return None


def _decode_hex(raw: str) -> str | None:
    digits = re.sub(r"\\x|0x|[\s:,]", "", raw[:MAX_DECODED_SEGMENT])
    try:
        return _printable(bytes.fromhex(digits))
    except ValueError:
        return None


def _decoded_detector(
    pattern: str, decode: Any, languages: tuple[str, ...], threshold: float, view: str, prio: int
) -> Detector:
    plain = phrase_set(languages, "plain")

    def validate(text: str, m: Any) -> int | None:
        if score(text, m.start(), m.end(), 1.0) < 1.0 and threshold >= 1.0:
            return None  # a discussion around the segment damps whatever it decodes to
        decoded = decode(m.group())
        if decoded is None:
            return None
        _cased, folded = normalise(decoded)
        return m.end() if plain.best_in(folded.text, threshold) else None

    return python_detector(
        "prompt_injection",
        pattern,
        view=view,
        validate=validate,
        lookbehind=CONTEXT_CHARS + 2,
        priority=prio,
    )


SPACED_FOLLOW = 200  # characters after a spaced-out run read with it


def _spaced_detector(languages: tuple[str, ...], threshold: float, prio: int) -> Detector:
    plain = phrase_set(languages, "plain")

    def validate(text: str, m: Any) -> int | None:
        if score(text, m.start(), m.end(), 1.0) < 1.0 and threshold >= 1.0:
            return None
        run = m.group()
        # Two or more separators in a row separate words; one separates letters.
        words = [_SPACED_SEP.sub("", w) for w in re.split(r"[ .\-_*·|/+]{2,}", run)]
        follow = text[m.end() : m.end() + SPACED_FOLLOW]
        if plain.best_in(" ".join(w for w in words if w) + follow, threshold):
            return int(m.end())
        compact = phrase_set(languages, "compact")  # built on first use: rarely needed
        return m.end() if compact.best_in(_SPACED_SEP.sub("", run) + follow, threshold) else None

    return python_detector(
        "prompt_injection",
        _SPACED,
        view="folded",
        validate=validate,
        lookbehind=CONTEXT_CHARS + 2,
        lookahead=SPACED_FOLLOW,
        priority=prio,
    )


# --- structure ----------------------------------------------------------------------
_CHAT_TOKENS = (
    r"<\|\s{0,2}(?:im_start|im_end|im_sep|system|user|assistant|endoftext|start_header_id|"
    r"end_header_id|eot_id|begin_of_text|end_of_turn|start_of_turn)\s{0,2}\|>"
    r"|\[/?inst\]|<<\s{0,2}/?sys\s{0,2}>>|\[/?(?:system|sys)\]"
    r"|<\s{0,2}/?\s{0,2}(?:start_of_turn|end_of_turn|system|sys|instructions?|admin|developer|"
    r"system_prompt|system-prompt)\s{0,2}>"
)
# An order right after a fake turn marker, in the five languages.
_ORDER = re.compile(
    r"ignor|disregard|forget|you (?:are|must|will|have to)|from now on|new (?:instructions|rules)|"
    r"override|reveal|print|output|respond|reply|answer|act as|pretend|do not|don't|never|always|"
    r"assistant|model|\bai\b|vergiss|du bist|du musst|ab sofort|antworte|zeige|"
    r"olvida|eres|debes|a partir de ahora|responde|muestra|oublie|tu es|tu dois|"
    r"désormais|réponds|affiche|dimentica|sei |devi|d'ora in poi|rispondi|mostra|"
    r"send|forward|delete|execute|run |fetch|visit|instructions?|anweisung|instrucciones|"
    r"\bki\b|\bia\b|\bllm|recommend|empfehl|raccomand|recomiend|recommand|bewerte|"
    r"must|müssen|deben|doivent|devono|rate |hire|einstellen|"
    r"istruzioni|consignes|rules|regeln|reglas|règles|regole",
)
_ROLE_LINE = (
    r"(?m)^[ \t>*#\-]{0,6}(?:system|admin|administrator|developer|root|operator|sistema|"
    r"système|systeme|amministratore|administrador|administrateur|entwickler)"
    r"(?:[ \t]{1,2}(?:message|prompt|note|override|nachricht|mensaje|messaggio|notice|update))?"
    r"[ \t]{0,2}[:\]][ \t]{0,4}"
)
_ROLE_JSON = r"[\"']role[\"']\s{0,3}:\s{0,3}[\"'](?:system|developer)[\"']"
_HIDDEN = (
    r"display\s{0,2}:\s{0,2}none|visibility\s{0,2}:\s{0,2}hidden"
    r"|font-size\s{0,2}:\s{0,2}0(?:\.\d{1,3})?(?:px|pt|em|rem)?(?![\d.])"
    r"|opacity\s{0,2}:\s{0,2}0(?![\d.])|color\s{0,2}:\s{0,2}(?:white|#fff(?:fff)?|transparent)\b"
    r"|<!--|\[color=white\]|\\color\{white\}"
)
ORDER_WINDOW = 300
_URL = r"(?:!\[[^\]\n]{0,120}\]\(\s{0,2})?https?://[^\s)\"'<>]{1,400}"
_DATA_WORDS = (
    r"conversation|chat|history|secret|password|passwd|token|api[_\-]?key|apikey|summary|"
    r"prompt|memory|context|credentials|creds|user[_\-]?data|messages|ssn|card|email|"
    r"private|personal|dialog|verlauf|konversation|conversaci[oó]n|historial|"
    r"historique|conversazione|cronologia|passwort|contraseña|mot[_\-]de[_\-]passe"
)
_PLACEHOLDER = re.compile(
    r"(?:\{\{?|%7b|<|%3c|\[|\$\{?)[^}\]>]{0,40}(?:" + _DATA_WORDS + r")", re.IGNORECASE
)
_QUERY_DATA = re.compile(r"[?&#][^=&]{0,30}=[^&]{0,80}(?:" + _DATA_WORDS + r")", re.IGNORECASE)


def _order_follows(text: str, m: Any) -> int | None:
    window = text[m.end() : m.end() + ORDER_WINDOW]
    return int(m.end()) if _ORDER.search(window) else None


def _exfil_url(text: str, m: Any) -> int | None:
    url = m.group()
    query = url[url.find("?") :] if "?" in url else ""
    if _PLACEHOLDER.search(query or url.split("://", 1)[-1].split("/", 1)[-1]):
        return int(m.end())
    if url.startswith("![") and query and _QUERY_DATA.search(query):
        return int(m.end())
    return None


def _structure_detectors(threshold: float) -> list[Detector]:
    def scored(weight: float, inner: Any = None) -> Any:
        def validate(text: str, m: Any) -> int | None:
            end = inner(text, m) if inner is not None else m.end()
            if end is None:
                return None
            return end if score(text, m.start(), m.end(), weight) >= threshold else None

        return validate

    every = None
    data_only = frozenset({"tool_output"})
    pending_data = frozenset({"tool_output", "input"})
    specs = (
        (_CHAT_TOKENS, scored(1.2), 0, every),
        (_ROLE_LINE, scored(1.1, _order_follows), ORDER_WINDOW, every),
        (_ROLE_JSON, scored(1.1), 0, data_only),
        (_HIDDEN, scored(1.1, _order_follows), ORDER_WINDOW, data_only),
        (_URL, scored(1.2, _exfil_url), 0, pending_data),
    )
    out = []
    for prio, (pattern, validate, lookahead, stages) in enumerate(specs, start=20):
        det = python_detector(
            "prompt_injection",
            pattern,
            view="folded",
            validate=validate,
            lookbehind=CONTEXT_CHARS + 2,
            lookahead=lookahead,
            priority=prio,
        )
        det.stages = stages
        out.append(det)
    return out


@lru_cache(maxsize=32)
def injection_detectors(
    languages: tuple[str, ...], threshold: float, layers: tuple[str, ...] = LAYERS
) -> tuple[Detector, ...]:
    """Detectors of the chosen layers and languages (cached: they are immutable)."""
    languages = tuple(lang for lang in LANGUAGES if lang in languages)
    out: list[Detector] = []
    if "phrases" in layers:
        out.append(
            _union_detector("prompt_injection", phrase_set(languages, "plain"), threshold, 0)
        )
    if "views" in layers:
        out.append(
            _union_detector("prompt_injection", phrase_set(languages, "reversed"), threshold, 10)
        )
        out.append(
            _union_detector("prompt_injection", phrase_set(languages, "rot13"), threshold, 11)
        )
        out.append(_spaced_detector(languages, threshold, 12))
        out.append(_decoded_detector(_BASE64, _decode_base64, languages, threshold, "cased", 13))
        out.append(_decoded_detector(_HEX, _decode_hex, languages, threshold, "folded", 14))
    if "structure" in layers:
        out.extend(_structure_detectors(threshold))
    return tuple(out)
