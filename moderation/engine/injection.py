"""Prompt-injection heuristics (English, German, French, Spanish) with a scoring rule.

Each phrase pattern has a weight. A phrase match becomes a finding when its score reaches
the rule's ``threshold`` (default 1.0):

    score = weight
            - 0.45 per distinct "discussion marker" in the 200 chars before it (max 2)
            - 0.2 more when the phrase is directly quoted and a marker is present

Discussion markers are words that signal text *about* prompt injection rather than an
attack ("prompt injection", "for example", "attackers", "zum Beispiel", "par exemple",
"por ejemplo", ...). A strong phrase (weight 1.0-1.2) is therefore flagged on its own but
not inside an explanation such as "What is prompt injection? Attackers write things like
'ignore all previous instructions'". The trade-off is documented in docs/moderation.md: an
attacker who wraps the attack in such words can lower its score.

Patterns run on the ``folded`` view (NFKC, invisible characters removed, case-folded,
homoglyphs mapped), so "ІGNORE" with a Cyrillic I or zero-width spaces still matches.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .detectors import Detector, python_detector

_S = r"[\s\-_*]{1,4}"  # whitespace (and markdown/underscore obfuscation) between words


def _w(*words: str) -> str:
    """Alternation of words, joined by our whitespace class where they contain spaces."""
    return "(?:" + "|".join(w.replace(" ", _S) for w in words) + ")"


def _opt(*words: str, n: int = 3) -> str:
    """Up to ``n`` optional filler words, each followed by whitespace."""
    return f"(?:{_w(*words)}{_S}){{0,{n}}}"


_EN_TARGET = _w(
    "instructions",
    "instruction",
    "prompts",
    "prompt",
    "rules",
    "directions",
    "guidelines",
    "directives",
    "constraints",
    "system prompt",
    "guardrails",
)
_DE_TARGET = _w(
    "anweisungen",
    "anweisung",
    "instruktionen",
    "regeln",
    "befehle",
    "vorgaben",
    "richtlinien",
    "systemanweisungen",
)
_FR_TARGET = _w("instructions", "consignes", "règles", "directives", "regles")
_ES_TARGET = _w("instrucciones", "indicaciones", "reglas", "órdenes", "directrices")

# (language, category, weight, pattern)
# fmt: off
PHRASES: tuple[tuple[str, str, float, str], ...] = (
    # --- English --------------------------------------------------------------------
    ("en", "override", 1.2,
     _w("ignore", "disregard", "forget", "override", "bypass", "skip") + _S
     + _opt("all", "any", "of", "the", "your", "my", "these", "those", "everything")
     + _w("previous", "prior", "above", "earlier", "preceding", "foregoing", "original",
          "initial", "system", "existing", "safety")
     + _S + _EN_TARGET),
    ("en", "override", 1.0,
     _w("ignore", "disregard", "forget") + _S + _opt("all", "everything", "of")
     + _w("the above", "everything above", "all above", "what you were told",
          "everything you were told", "your programming", "your training")),
    ("en", "override", 1.0, _w("new instructions", "updated instructions") + r"\s{0,2}:"),
    ("en", "roleplay", 1.2,
     r"you" + _S + r"are" + _S + r"now" + _S
     + _w("dan", "in developer mode", "jailbroken", "unrestricted", "an unfiltered",
          "a unfiltered", "free from", "no longer bound", "evil")),
    ("en", "roleplay", 1.2,
     _w("pretend", "imagine", "act as if", "act like") + _S + _opt("that", "you", "are")
     + _w("you have no", "you had no", "you don't have any", "you do not have any",
          "there are no", "without any")
     + _S + _w("restrictions", "rules", "limits", "limitations", "filters", "guidelines",
               "content policy", "safety")),
    ("en", "roleplay", 1.2, _w("do anything now", "developer mode enabled",
                               "jailbreak mode", "dan mode")),
    ("en", "extraction", 1.1,
     _w("reveal", "show", "print", "display", "output", "repeat", "tell me", "give me",
        "leak", "dump", "write out", "what is")
     + _S + _opt("me", "us", "verbatim", n=1)
     + _w("your", "the") + _S + _opt("full", "entire", "original", "hidden", "initial",
                                     "secret", "exact", n=2)
     + _w("system prompt", "system message", "hidden prompt", "initial prompt",
          "system instructions", "developer message")),
    ("en", "extraction", 1.0,
     _w("reveal", "print", "repeat", "dump", "leak") + _S + _w("your") + _S
     + _opt("full", "entire", "original", "hidden", "initial", "exact", n=2)
     + _w("instructions", "prompt", "rules")),
    # Instructions smuggled into tool output, addressed to the model.
    ("en", "smuggled", 1.2,
     _w("ai assistant", "assistant", "ai agent", "ai", "llm", "chatgpt", "claude", "system",
        "note to the ai", "note to the assistant", "note to ai", "attention ai",
        "instructions for the ai")
     + r"\s{0,2}:\s{0,4}"
     + _w("ignore", "disregard", "forget", "do not tell", "don't tell", "you must",
          "instead", "secretly", "send", "exfiltrate", "override")),
    ("en", "smuggled", 1.0,
     r"<\s{0,2}/?\s{0,2}" + _w("system", "sys", "instructions", "instruction", "admin",
                               "im_start", "\\|im_start\\|", "developer")
     + r"\s{0,2}>"),
    ("en", "smuggled", 1.0, r"\[/?" + _w("system", "inst", "sys") + r"\]"),
    ("en", "smuggled", 1.0, r"#{2,4}" + _S + _w("system", "new instructions", "instruction")
     + r"\s{0,2}:?\n"),
    # --- German ---------------------------------------------------------------------
    ("de", "override", 1.2,
     _w("ignoriere", "ignorieren sie", "vergiss", "vergessen sie", "missachte", "übergehe")
     + _S + _opt("alle", "die", "deine", "ihre", "sämtliche", "samtliche", "bisherigen",
                 "vorherigen", "obigen", "vorigen", "früheren", "fruheren", n=3)
     + _DE_TARGET),
    ("de", "roleplay", 1.2,
     r"du" + _S + r"bist" + _S + _w("jetzt", "nun", "ab sofort", "ab jetzt") + _S
     + _w("dan", "ein ungefiltert", "im entwicklermodus", "ohne einschränkungen",
          "ohne regeln", "befreit")),
    ("de", "roleplay", 1.2,
     _w("tu so", "tue so", "stell dir vor") + r",?" + _S + _opt("als", "ob", "dass")
     + _w("du keine", "hättest du keine", "du hättest keine", "es keine")
     + _S + _w("einschränkungen", "regeln", "grenzen", "beschränkungen", "filter")),
    ("de", "extraction", 1.1,
     _w("zeige", "zeig", "gib", "nenne", "verrate", "drucke", "wiederhole") + _S
     + _opt("mir", "uns", n=1) + _w("deinen", "deine", "den", "die", "ihren", "ihre") + _S
     + _opt("vollständigen", "vollstandigen", "geheimen", "ursprünglichen", n=1)
     + _w("systemprompt", "system-prompt", "system prompt", "systemanweisungen",
          "systemnachricht", "anweisungen")),
    # --- French ---------------------------------------------------------------------
    ("fr", "override", 1.2,
     "(?:" + _w("ignore", "ignorez", "oublie", "oubliez") + _S
     + r"|ne\s{1,4}ten(?:ez|s)\s{1,4}pas\s{1,4}compte\s{1,4}d(?:es\s|e\s|u\s|['’])\s{0,3})"
     + _opt("toutes", "tous", "les", "des", "tes", "vos", "ces", n=2)
     + _FR_TARGET + _S + _w("précédentes", "precedentes", "antérieures", "ci-dessus",
                            "initiales", "du système", "systeme")),
    ("fr", "roleplay", 1.2,
     r"tu" + _S + r"es" + _S + _w("maintenant", "désormais", "desormais") + _S
     + _w("dan", "en mode développeur", "sans restriction", "sans restrictions",
          "libéré", "libre de toute")),
    ("fr", "roleplay", 1.2,
     _w("fais comme si", "faites comme si", "imagine que") + _S
     + _w("tu n'avais", "tu n’avais", "vous n'aviez", "vous n’aviez", "il n'y avait")
     + _S + _w("aucune", "pas de", "plus de") + _S
     + _w("restriction", "restrictions", "règle", "règles", "limite", "limites", "filtre")),
    ("fr", "extraction", 1.1,
     _w("révèle", "revele", "révélez", "montre", "montrez", "affiche", "affichez", "donne",
        "donnez", "imprime", "répète", "repete")
     + r"(?:-moi|-nous)?" + _S + _opt("moi", n=1)
     + _w("ton", "votre", "le", "tes", "vos", "les") + _S
     + _w("prompt système", "prompt systeme", "prompt du système", "invite système",
          "message système", "instructions système", "instructions initiales",
          "consignes secrètes")),
    # --- Spanish --------------------------------------------------------------------
    ("es", "override", 1.2,
     _w("ignora", "ignore", "ignorar", "olvida", "olvide", "omite", "descarta") + _S
     + _opt("todas", "las", "tus", "sus", "estas", n=3)
     + _ES_TARGET + _S + _w("anteriores", "previas", "del sistema", "iniciales")),
    ("es", "roleplay", 1.2,
     _w("ahora eres", "a partir de ahora eres", "desde ahora eres") + _S
     + _w("dan", "un modelo sin restricciones", "una ia sin restricciones", "libre",
          "sin restricciones", "sin filtros")),
    ("es", "roleplay", 1.2,
     _w("finge", "imagina", "haz como si") + _S + _opt("que", n=1)
     + _w("no tienes", "no tuvieras", "no hay") + _S
     + _w("restricciones", "reglas", "límites", "limites", "filtros")),
    ("es", "extraction", 1.1,
     _w("revela", "revélame", "muestra", "muéstrame", "muestrame", "imprime", "dime",
        "repite", "enséñame")
     + _S + _w("tu", "el", "tus", "las", "su") + _S
     + _w("prompt del sistema", "prompt de sistema", "mensaje del sistema",
          "instrucciones del sistema", "instrucciones iniciales", "instrucciones ocultas")),
)
# fmt: on

_MARKERS = re.compile(
    r"(?<![\w@./\-])(?:"
    r"prompt[\s\-]?injection|injection de prompt|inyecci[oó]n de prompt|jailbreaks?\b|"
    r"for example|for instance|e\.g\.|such as|known as|called|\bexample|"
    r"(?:things|phrases|strings|text|prompts|inputs|messages|payloads) like|"
    r"attackers?|malicious|adversarial|what is|what's|how (?:do|does|to|can)|detect|"
    r"defen[cs]e|defend|classifier|research|explain|"
    r"zum beispiel|z\.\s?b\.|beispiel|angreifer|was ist|sogenannte|erkennen|wie etwa|"
    r"par exemple|exemple|attaquants?|qu['’]est-ce|appel[ée]e|détecter|"
    r"por ejemplo|ejemplo|atacantes?|qu[ée] es|llamad[ao]|detectar"
    r")(?![\w@/\-]|\.\w)"  # whole words only: "example.com" is not a marker
)
_QUOTES = "\"'“”„«»‘’`"
CONTEXT_CHARS = 200
MARKER_PENALTY = 0.45
QUOTE_PENALTY = 0.2


def score(text: str, start: int, end: int, weight: float) -> float:
    """Score of a phrase match at [start, end) of the folded text (see module docstring)."""
    before = text[max(0, start - CONTEXT_CHARS) : start]
    markers = {m.group() for m in _MARKERS.finditer(before)}
    value = weight - MARKER_PENALTY * min(len(markers), 2)
    if markers and before.rstrip()[-1:] in _QUOTES:
        value -= QUOTE_PENALTY
    return value


@lru_cache(maxsize=32)
def injection_detector(languages: tuple[str, ...], threshold: float) -> Detector:
    """One detector over all phrase patterns of the chosen languages (cached: immutable)."""
    chosen = [p for p in PHRASES if p[0] in languages]
    groups = "|".join(f"(?P<p{i}>{p[3]})" for i, p in enumerate(chosen))
    weights = {f"p{i}": p[2] for i, p in enumerate(chosen)}

    def validate(text: str, m: Any) -> int | None:
        if score(text, m.start(), m.end(), weights[m.lastgroup]) >= threshold:
            return m.end()
        return None

    return python_detector(
        "prompt_injection",
        f"(?<![^\\W_])(?:{groups})",
        view="folded",
        validate=validate,
        lookbehind=CONTEXT_CHARS + 2,
    )
