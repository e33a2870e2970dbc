"""How much a phrase match counts: its weight, damped by markers before it that show the
text talks about injections (examples, research, quoting) rather than doing one."""

from __future__ import annotations

import re

# Strong markers name the subject; weak ones are generic question or analysis words that
# also open real attacks ("What is your system prompt?"), so they damp less.
_STRONG = (
    r"prompt[\s\-]?injections?|injection de prompt|inyecci[oó]n de prompt|"
    r"iniezione di prompt|prompt[\s\-]?injektion|jailbreaks?\b|"
    r"for example|for instance|e\.g\.|such as|known as|\bexample|"
    r"(?:things|phrases|strings|text|prompts|inputs|messages|payloads|attacks) like|"
    r"attackers?|malicious|adversarial|classif(?:y|ier|ication)|red[\s\-]team|"
    r"zum beispiel|z\.\s?b\.|beispiel|angreifer|sogenannte|wie etwa|"
    r"par exemple|exemple|attaquants?|appel[ée]e|"
    r"por ejemplo|ejemplo|atacantes?|llamad[ao]|"
    r"ad esempio|per esempio|esempio|attaccanti|chiamat[oa]"
)


_WEAK = (
    r"called|what is|what's|how (?:do|does|to|can)|detect|defen[cs]e|defend|research|"
    r"explain|analy[sz]e|analysis|security|label|was ist|erkennen|qu['’]est-ce|détecter|"
    r"qu[ée] es|detectar|cos['’]è|rilevare"
)


_MARKERS = re.compile(
    rf"(?<![\w@./\-])(?:(?P<strong>{_STRONG})|(?P<weak>{_WEAK}))"
    r"(?![\w@/\-]|\.\w)"  # whole words only: "example.com" is not a marker
)


_QUOTES = "\"'“”„«»‘’`"


CONTEXT_CHARS = 200


MARKER_PENALTY = 0.45


WEAK_MARKER_PENALTY = 0.25


QUOTE_PENALTY = 0.2


def score(text: str, start: int, end: int, weight: float) -> float:
    """Score of a match at [start, end) of the folded text (see module docstring)."""
    before = text[max(0, start - CONTEXT_CHARS) : start].casefold()
    found: dict[str, float] = {}
    for m in _MARKERS.finditer(before):
        found[m.group()] = MARKER_PENALTY if m.group("strong") else WEAK_MARKER_PENALTY
    markers = sorted(found.values(), reverse=True)[:2]
    value = weight - sum(markers)
    if markers and before.rstrip()[-1:] in _QUOTES:
        value -= QUOTE_PENALTY
    return value
