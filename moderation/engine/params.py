"""Validation of rule parameters: clear messages for operators, defaults filled in."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .regex_tools import RE2_MAX_REPEAT, RegexAnalysisError, analyse, compile_re2
from .types import (
    ACTIONS,
    PII_TYPES,
    RULE_KINDS,
    SECRET_TYPES,
    SEVERITIES,
    STAGES,
    RuleParamsError,
    RuleSpec,
)

LANGUAGES = ("en", "de", "fr", "es", "it")
INJECTION_LAYERS = ("phrases", "views", "structure")
MAX_KEYWORDS = 50_000
DEFAULT_REGEX_MAX_MATCH = 256
# A match this long would make the stream hold back too much text.
MAX_REGEX_WIDTH = 8192
EXTERNAL_DEFAULT_URL = "https://api.openai.com/v1"
EXTERNAL_DEFAULT_MODEL = "omni-moderation-latest"


def _fail(msg: str) -> RuleParamsError:
    return RuleParamsError(msg)


def _check_keys(kind: str, params: dict, allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed - {"allow"})
    if unknown:
        raise _fail(f"{kind} rule: unknown parameter(s) {', '.join(unknown)}")


def _str_list(kind: str, name: str, value: Any, *, required: bool) -> list[str]:
    if value is None:
        value = []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(f"{kind} rule: '{name}' must be a list of strings")
    items = [v for v in value if v.strip()]
    if required and not items:
        raise _fail(f"{kind} rule: '{name}' must contain at least one non-empty string")
    return list(items)


def _bool(kind: str, name: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(f"{kind} rule: '{name}' must be true or false")
    return value


def _number(kind: str, name: str, value: Any, lo: float, hi: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _fail(f"{kind} rule: '{name}' must be a number between {lo} and {hi}")
    return value


def _subset(kind: str, name: str, value: Any, choices: tuple[str, ...]) -> list[str]:
    if value is None:
        return list(choices)
    items = _str_list(kind, name, value, required=True)
    bad = [v for v in items if v not in choices]
    if bad:
        raise _fail(
            f"{kind} rule: unknown {name} {', '.join(map(repr, bad))}; "
            f"choose from {', '.join(choices)}"
        )
    return [c for c in choices if c in items]


def _keyword(p: dict) -> dict:
    _check_keys("keyword", p, {"terms", "mode"})
    terms = _str_list("keyword", "terms", p.get("terms"), required=True)
    if len(terms) > MAX_KEYWORDS:
        raise _fail(f"keyword rule: at most {MAX_KEYWORDS} terms are supported")
    mode = p.get("mode", "word")
    aliases = {"word": "word", "whole_word": "word", "whole-word": "word", "substring": "substring"}
    if mode not in aliases:
        raise _fail("keyword rule: 'mode' must be 'word' (whole words) or 'substring'")
    return {"terms": terms, "mode": aliases[mode]}


def _regex(p: dict) -> dict:
    _check_keys("regex", p, {"pattern", "case_sensitive", "max_match_length"})
    pattern = p.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise _fail("regex rule: 'pattern' must be a non-empty string")
    case_sensitive = _bool("regex", "case_sensitive", p.get("case_sensitive"), False)
    bound = int(
        _number(
            "regex",
            "max_match_length",
            p.get("max_match_length"),
            1,
            RE2_MAX_REPEAT,
            DEFAULT_REGEX_MAX_MATCH,
        )
    )
    try:
        compile_re2(pattern)  # RE2 syntax first: it is the engine that will run it
        analysis = analyse(pattern, 0 if case_sensitive else re.IGNORECASE, bound)
        compile_re2(analysis.bounded)
    except RegexAnalysisError as exc:
        raise _fail(f"regex rule: invalid pattern: {exc}") from None
    if analysis.min_width == 0:
        raise _fail("regex rule: the pattern can match empty text; make it match something")
    if analysis.max_width > MAX_REGEX_WIDTH:
        raise _fail(
            f"regex rule: the pattern can match up to {analysis.max_width} characters "
            f"(limit {MAX_REGEX_WIDTH}); avoid nested repetition or lower max_match_length"
        )
    return {"pattern": pattern, "case_sensitive": case_sensitive, "max_match_length": bound}


def _pii(p: dict) -> dict:
    _check_keys("pii", p, {"types"})
    return {"types": _subset("pii", "types", p.get("types"), PII_TYPES)}


def _secret(p: dict) -> dict:
    _check_keys("secret", p, {"types", "known"})
    types = p.get("types")
    chosen = [] if types == [] else _subset("secret", "types", types, SECRET_TYPES)
    return {"types": chosen, "known": _bool("secret", "known", p.get("known"), True)}


def _prompt_injection(p: dict) -> dict:
    _check_keys("prompt_injection", p, {"threshold", "languages", "layers"})
    return {
        "threshold": _number("prompt_injection", "threshold", p.get("threshold"), 0.1, 5, 1.0),
        "languages": _subset("prompt_injection", "languages", p.get("languages"), LANGUAGES),
        "layers": _subset("prompt_injection", "layers", p.get("layers"), INJECTION_LAYERS),
    }


def _max_length(p: dict) -> dict:
    _check_keys("max_length", p, set({"max_chars"}))
    value = p.get("max_chars")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail("max_length rule: 'max_chars' must be a positive integer")
    return {"max_chars": value}


def _external(p: dict) -> dict:
    _check_keys(
        "external",
        p,
        {
            "base_url",
            "model",
            "timeout_s",
            "fail_mode",
            "categories",
            "threshold",
            "api_key_secret",
        },
    )
    key_secret = p.get("api_key_secret")
    if key_secret is not None and (not isinstance(key_secret, str) or not key_secret):
        raise _fail("external rule: 'api_key_secret' must name a vault secret")
    base_url = p.get("base_url", EXTERNAL_DEFAULT_URL)
    if not isinstance(base_url, str) or not re.match(r"https?://[^\s/]+", base_url):
        raise _fail("external rule: 'base_url' must be an http(s) URL")
    model = p.get("model", EXTERNAL_DEFAULT_MODEL)
    if not isinstance(model, str) or not model:
        raise _fail("external rule: 'model' must be a non-empty string")
    fail_mode = p.get("fail_mode", "closed")
    if fail_mode not in ("open", "closed"):
        raise _fail("external rule: 'fail_mode' must be 'open' or 'closed'")
    categories = p.get("categories")
    if categories is not None:
        categories = _str_list("external", "categories", categories, required=True)
    threshold = p.get("threshold")
    if threshold is not None:
        threshold = _number("external", "threshold", threshold, 0.0, 1.0, 0.5)
    return {
        "base_url": base_url.rstrip("/"),
        "model": model,
        "timeout_s": _number("external", "timeout_s", p.get("timeout_s"), 0.05, 120, 5.0),
        "fail_mode": fail_mode,
        "categories": categories,
        "threshold": threshold,
        "api_key_secret": key_secret,
    }


_VALIDATORS: dict[str, Callable[[dict], dict]] = {
    "keyword": _keyword,
    "regex": _regex,
    "pii": _pii,
    "secret": _secret,
    "prompt_injection": _prompt_injection,
    "max_length": _max_length,
    "external": _external,
}


def validate_params(kind: str, params: dict) -> dict:
    """Validate a rule's parameters and return them with defaults filled in.

    Raises ``RuleParamsError`` (a ``ValueError``) with a message meant for the operator,
    e.g. a regex RE2 rejects, an empty keyword list, an unknown kind or PII type.
    """
    if kind not in _VALIDATORS:
        raise _fail(f"unknown rule kind {kind!r}; choose from {', '.join(RULE_KINDS)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _fail(f"{kind} rule: parameters must be an object")
    clean = _VALIDATORS[kind](params)
    if kind not in ("max_length", "external"):
        clean["allow"] = _str_list(kind, "allow", params.get("allow"), required=False)
    return clean


def validate_rule(rule: RuleSpec) -> dict:
    """Validate a whole rule (kind, stages, action, severity, params); returns clean params."""
    if not rule.stages or not set(rule.stages) <= STAGES:
        raise _fail(
            f"rule {rule.name!r}: stages must be a non-empty subset of {', '.join(sorted(STAGES))}"
        )
    if rule.action not in ACTIONS:
        raise _fail(f"rule {rule.name!r}: action must be one of {', '.join(ACTIONS)}")
    if rule.severity not in SEVERITIES:
        raise _fail(f"rule {rule.name!r}: severity must be one of {', '.join(SEVERITIES)}")
    if rule.kind == "max_length" and rule.action == "allow":
        raise _fail(f"rule {rule.name!r}: a max_length rule cannot allow-list text")
    return validate_params(rule.kind, rule.params)
