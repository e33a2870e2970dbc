"""Validation of rule parameters: one pydantic model per rule kind.

Each model is the single declaration of a kind's parameters, their types, ranges and
defaults (``extra="forbid"``: a misspelt parameter is an error, not ignored). The models
form a union discriminated by ``kind``. ``validate_params`` turns pydantic's errors into
one message for the operator, e.g. ``regex rule: invalid pattern: ...``; the admin and
the API show that message as it is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

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
KEYWORD_MODES = {
    "word": "word",
    "whole_word": "word",
    "whole-word": "word",
    "substring": "substring",
}

Number = Annotated[float, Field(allow_inf_nan=False)]


def _strings(value: list[str], *, required: bool, name: str) -> list[str]:
    items = [v for v in value if v.strip()]
    if required and not items:
        raise ValueError(f"'{name}' must contain at least one non-empty string")
    return items


def _subset(value: list[str] | None, choices: tuple[str, ...], name: str) -> list[str]:
    if value is None:
        return list(choices)
    items = _strings(value, required=True, name=name)
    bad = [v for v in items if v not in choices]
    if bad:
        raise ValueError(
            f"unknown {name} {', '.join(map(repr, bad))}; choose from {', '.join(choices)}"
        )
    return [c for c in choices if c in items]


class _Params(BaseModel):
    # strict: true is not 1, "5" is not 5; frozen: validated params are not edited.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    allow: list[str] = Field(default_factory=list, description="Literal texts never reported.")

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        return _strings(value, required=False, name="allow")


class KeywordParams(_Params):
    kind: Literal["keyword"] = "keyword"
    terms: list[str] = Field(description="Words or phrases to find (case-folded).")
    mode: Literal["word", "whole_word", "whole-word", "substring"] = "word"

    @field_validator("terms")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        terms = _strings(value, required=True, name="terms")
        if len(terms) > MAX_KEYWORDS:
            raise ValueError(f"at most {MAX_KEYWORDS} terms are supported")
        return terms

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        return KEYWORD_MODES[value]


class RegexParams(_Params):
    kind: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, description="An RE2 pattern.")
    case_sensitive: bool = False
    max_match_length: int = Field(DEFAULT_REGEX_MAX_MATCH, ge=1, le=RE2_MAX_REPEAT)

    @model_validator(mode="after")
    def _compiles(self) -> RegexParams:
        try:
            compile_re2(self.pattern)  # RE2 syntax first: it is the engine that will run it
            flags = 0 if self.case_sensitive else re.IGNORECASE
            analysis = analyse(self.pattern, flags, self.max_match_length)
            compile_re2(analysis.bounded)
        except RegexAnalysisError as exc:
            raise ValueError(f"invalid pattern: {exc}") from None
        if analysis.min_width == 0:
            raise ValueError("the pattern can match empty text; make it match something")
        if analysis.max_width > MAX_REGEX_WIDTH:
            raise ValueError(
                f"the pattern can match up to {analysis.max_width} characters "
                f"(limit {MAX_REGEX_WIDTH}); avoid nested repetition or lower max_match_length"
            )
        return self


class PiiParams(_Params):
    kind: Literal["pii"] = "pii"
    types: list[str] | None = Field(
        None, validate_default=True, description=f"Any of {', '.join(PII_TYPES)}; all."
    )

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str]:
        return _subset(value, PII_TYPES, "types")


class SecretParams(_Params):
    kind: Literal["secret"] = "secret"
    types: list[str] | None = Field(
        None, validate_default=True, description="Secret patterns; [] for none; all."
    )
    known: bool = Field(True, description="Also find the vault's known secret values.")

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str]:
        return [] if value == [] else _subset(value, SECRET_TYPES, "types")


class PromptInjectionParams(_Params):
    kind: Literal["prompt_injection"] = "prompt_injection"
    threshold: Number = Field(1.0, ge=0.1, le=5)
    languages: list[str] | None = Field(None, validate_default=True)
    layers: list[str] | None = Field(
        None, validate_default=True, description=f"Any of {', '.join(INJECTION_LAYERS)}; all."
    )

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str] | None) -> list[str]:
        return _subset(value, LANGUAGES, "languages")

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[str] | None) -> list[str]:
        return _subset(value, INJECTION_LAYERS, "layers")


class MaxLengthParams(_Params):
    kind: Literal["max_length"] = "max_length"
    max_chars: int

    @field_validator("max_chars")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("'max_chars' must be a positive integer")
        return value


class ExternalParams(_Params):
    kind: Literal["external"] = "external"
    base_url: str = EXTERNAL_DEFAULT_URL
    model: str = Field(EXTERNAL_DEFAULT_MODEL, min_length=1)
    timeout_s: Number = Field(5.0, ge=0.05, le=120)
    fail_mode: Literal["open", "closed"] = "closed"
    categories: list[str] | None = None
    threshold: Number | None = Field(None, ge=0.0, le=1.0)
    api_key_secret: str | None = Field(None, min_length=1, description="A vault secret name.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError("'base_url' must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _strings(value, required=True, name="categories")


RuleParams = Annotated[
    KeywordParams
    | RegexParams
    | PiiParams
    | SecretParams
    | PromptInjectionParams
    | MaxLengthParams
    | ExternalParams,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RuleParams)
# These kinds match no text, so an allow list means nothing to them: dropped.
_NO_ALLOW = frozenset({"max_length", "external"})


def _message(kind: str, error: Any) -> str:
    """One pydantic error as the operator reads it: the rule kind, the parameter, why."""
    loc = [str(part) for part in error["loc"][1:]]  # the first part is the kind's tag
    if error["type"] == "extra_forbidden":
        return f"{kind} rule: unknown parameter(s) {loc[0] if loc else ''}"
    if error["type"] == "value_error":
        return f"{kind} rule: {error['ctx']['error']}"
    where = f"'{loc[0]}'" + "".join(f"[{p}]" for p in loc[1:]) if loc else "parameters"
    return f"{kind} rule: {where}: {error['msg']}"


def _param(kind: str, error: Any) -> str | None:
    """The parameter an error is about; a regex's whole-pattern checks are the pattern's."""
    loc = [str(part) for part in error["loc"][1:]]
    if loc and error["type"] != "extra_forbidden":
        return loc[0]
    return "pattern" if kind == "regex" and not loc else None


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate a rule's parameters and return them with defaults filled in.

    Raises ``RuleParamsError`` (a ``ValueError``) with a message meant for the operator,
    e.g. a regex RE2 rejects, an empty keyword list, an unknown kind or PII type.
    """
    if kind not in RULE_KINDS:
        raise RuleParamsError(f"unknown rule kind {kind!r}; choose from {', '.join(RULE_KINDS)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RuleParamsError(f"{kind} rule: parameters must be an object")
    if "kind" in params:
        raise RuleParamsError(f"{kind} rule: unknown parameter(s) kind")
    try:
        model = _ADAPTER.validate_python({**params, "kind": kind})
    except ValidationError as exc:
        # All problems at once would be a wall of text; the first is enough to act on.
        error = exc.errors()[0]
        raise RuleParamsError(_message(kind, error), param=_param(kind, error)) from None
    clean: dict[str, Any] = model.model_dump(exclude={"kind"})
    if kind in _NO_ALLOW:
        clean.pop("allow")
    return clean


def params_schema() -> dict[str, Any]:
    """The JSON schema of every kind's parameters (for the API's documentation)."""
    return _ADAPTER.json_schema()


def validate_rule(rule: RuleSpec) -> dict[str, Any]:
    """Validate a whole rule (kind, stages, action, severity, params); returns clean params."""
    if not rule.stages or not set(rule.stages) <= STAGES:
        raise RuleParamsError(
            f"rule {rule.name!r}: stages must be a non-empty subset of {', '.join(sorted(STAGES))}"
        )
    if rule.action not in ACTIONS:
        raise RuleParamsError(f"rule {rule.name!r}: action must be one of {', '.join(ACTIONS)}")
    if rule.severity not in SEVERITIES:
        raise RuleParamsError(
            f"rule {rule.name!r}: severity must be one of {', '.join(SEVERITIES)}"
        )
    if rule.kind == "max_length" and rule.action == "allow":
        raise RuleParamsError(f"rule {rule.name!r}: a max_length rule cannot allow-list text")
    return validate_params(rule.kind, rule.params)
