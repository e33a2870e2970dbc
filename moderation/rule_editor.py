"""The rule editor of the policy admin: one set of form fields per rule kind.

The fields map onto the engine's parameter models (``moderation.engine.params``), which
stay the single validation: the form only turns fields into a params dict and back, and
shows the engine's message on the field of the parameter it is about. The raw JSON stays
available as the advanced field; edited, it replaces the fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse
from unfold.admin import StackedInline
from unfold.forms import PaginationInlineFormSet
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanWidget,
)

from moderation import engine
from moderation.engine.params import (
    DEFAULT_REGEX_MAX_MATCH,
    EXTERNAL_DEFAULT_MODEL,
    EXTERNAL_DEFAULT_URL,
    INJECTION_LAYERS,
    KEYWORD_MODES,
    LANGUAGES,
)
from moderation.engine.types import PII_TYPES, SECRET_TYPES
from moderation.models import Rule, Stage

KINDS_WITH_ALLOW = ("keyword", "regex", "pii", "secret", "prompt_injection")
TEST_TEXT_MAX = 10_000


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def _unlines(value: Any) -> str:
    return "\n".join(str(v) for v in value) if isinstance(value, list) else ""


@dataclass(frozen=True)
class Param:
    """One engine parameter shown as one form field."""

    name: str
    field: str
    to_form: Callable[[Any], Any] = lambda v: v
    # None leaves the parameter out, so the engine's default applies.
    to_params: Callable[[Any], Any] = lambda v: v


_LINES = {"to_form": _unlines, "to_params": _lines}
_ALLOW = Param("allow", "allow", _unlines, lambda v: _lines(v) or None)

KIND_PARAMS: dict[str, tuple[Param, ...]] = {
    "keyword": (
        Param("terms", "keyword_terms", **_LINES),
        Param("mode", "keyword_mode", lambda v: KEYWORD_MODES.get(v, "word")),
        _ALLOW,
    ),
    "regex": (
        Param("pattern", "regex_pattern"),
        Param("case_sensitive", "regex_case_sensitive"),
        Param("max_match_length", "regex_max_match_length"),
        _ALLOW,
    ),
    "pii": (Param("types", "pii_types"), _ALLOW),
    "secret": (Param("types", "secret_types"), Param("known", "secret_known"), _ALLOW),
    "prompt_injection": (
        Param("languages", "injection_languages"),
        Param("threshold", "injection_threshold"),
        Param("layers", "injection_layers"),
        _ALLOW,
    ),
    "max_length": (Param("max_chars", "max_chars"),),
    "external": (
        Param("base_url", "external_base_url"),
        Param("model", "external_model"),
        Param("timeout_s", "external_timeout_s"),
        Param("fail_mode", "external_fail_mode"),
        Param("categories", "external_categories", _unlines, lambda v: _lines(v) or None),
        Param("threshold", "external_threshold"),
        Param("api_key_secret", "external_api_key_secret", to_params=lambda v: v or None),
    ),
}


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, v.replace("_", " ")) for v in values]


def _text(**kwargs: Any) -> forms.CharField:
    return forms.CharField(required=False, widget=UnfoldAdminTextInputWidget, **kwargs)


def _textarea(rows: int = 4, **kwargs: Any) -> forms.CharField:
    return forms.CharField(
        required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": rows}), **kwargs
    )


def _checkboxes(values: tuple[str, ...], **kwargs: Any) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=_choices(values),
        required=False,
        initial=list(values),
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        **kwargs,
    )


def _number(**kwargs: Any) -> forms.FloatField:
    return forms.FloatField(
        required=False, widget=UnfoldAdminDecimalFieldWidget(attrs={"step": "any"}), **kwargs
    )


def _integer(**kwargs: Any) -> forms.IntegerField:
    return forms.IntegerField(required=False, widget=UnfoldAdminIntegerFieldWidget, **kwargs)


def _boolean(**kwargs: Any) -> forms.BooleanField:
    return forms.BooleanField(required=False, widget=UnfoldBooleanWidget, **kwargs)


class RuleForm(forms.ModelForm):
    """A rule with the fields of each kind; only the selected kind's are used."""

    order = _integer(
        min_value=0, label="Order", help_text="Rules run in this order; empty puts it last."
    )
    stages = forms.MultipleChoiceField(
        choices=Stage.choices,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        initial=[s for s, _ in Stage.choices],
    )
    keyword_terms = _textarea(label="Terms", help_text="One word or phrase per line.")
    keyword_mode = forms.ChoiceField(
        choices=[("word", "Whole words"), ("substring", "Anywhere (substring)")],
        initial="word",
        required=False,
        label="Match",
        widget=UnfoldAdminSelectWidget,
    )
    regex_pattern = _text(label="Pattern", help_text="An RE2 regular expression.")
    regex_case_sensitive = _boolean(label="Case sensitive")
    regex_max_match_length = _integer(
        min_value=1, initial=DEFAULT_REGEX_MAX_MATCH, label="Longest match (characters)"
    )
    regex_test = _textarea(
        rows=2,
        label="Test text",
        max_length=TEST_TEXT_MAX,
        help_text="A sample to try the pattern on (not saved): the matches are shown with "
        "'Test pattern', and on save.",
    )
    pii_types = _checkboxes(PII_TYPES, label="Types")
    secret_types = _checkboxes(SECRET_TYPES, label="Types", help_text="None checked: none.")
    secret_known = _boolean(
        initial=True, label="Known secrets", help_text="Also find the vault's secret values."
    )
    injection_languages = _checkboxes(LANGUAGES, label="Languages")
    injection_threshold = _number(
        initial=1.0, label="Threshold", help_text="0.1 to 5; lower finds more."
    )
    injection_layers = _checkboxes(INJECTION_LAYERS, label="Layers")
    max_chars = _integer(min_value=1, label="Most characters")
    external_base_url = _text(initial=EXTERNAL_DEFAULT_URL, label="Base URL")
    external_model = _text(initial=EXTERNAL_DEFAULT_MODEL, label="Model")
    external_timeout_s = _number(initial=5.0, label="Timeout (s)")
    external_fail_mode = forms.ChoiceField(
        choices=[("closed", "Closed (block)"), ("open", "Open (let text through)")],
        initial="closed",
        required=False,
        label="When the API fails",
        widget=UnfoldAdminSelectWidget,
    )
    external_categories = _textarea(
        rows=3, label="Categories", help_text="One per line; empty: all."
    )
    external_threshold = _number(label="Score threshold", help_text="0 to 1; empty: the API's.")
    external_api_key_secret = _text(label="API key secret", help_text="A vault secret's name.")
    allow = _textarea(
        rows=2, label="Allow list", help_text="One text per line that is never reported."
    )

    class Meta:
        model = Rule
        fields = ["order", "name", "kind", "params", "stages", "action", "severity", "is_active"]
        labels = {"params": "Parameters (JSON)"}
        help_texts = {
            "params": "All of the rule's parameters. Edited, this replaces the fields above."
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].widget.attrs["data-sy-rule-kind"] = "1"
        test_url = reverse("admin:moderation_policy_pattern_test")
        self.fields["regex_test"].widget.attrs["data-sy-test-url"] = test_url
        self.test_matches: list[str] | None = None
        self.order_blank = False
        self.json_wins = False
        if self.instance.pk is None:
            self.initial["order"] = None
        params = self.instance.params
        for param in KIND_PARAMS.get(self.instance.kind, ()):
            if isinstance(params, dict) and param.name in params:
                self.initial[param.field] = param.to_form(params[param.name])

    def fields_params(self) -> dict[str, Any]:
        """The selected kind's fields as the engine's params (empty ones left out)."""
        data = self.cleaned_data
        params: dict[str, Any] = {}
        for param in KIND_PARAMS.get(data.get("kind") or "", ()):
            value = param.to_params(data.get(param.field))
            if value is not None and value != "":
                params[param.name] = value
        return params

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or self.cleaned_data
        if data.get("order") is None:
            self.order_blank = True
            data["order"] = 0  # the formset puts it last
        # The JSON wins when it was edited (and not emptied); else the kind's fields do.
        self.json_wins = "params" in self.changed_data and data.get("params") not in (None, {})
        if not self.json_wins and "params" not in self.errors:
            data["params"] = self.fields_params()
        if data.get("kind") == "regex" and data.get("regex_test"):
            self.test_matches = self._test(data)
        return data

    def _test(self, data: dict[str, Any]) -> list[str] | None:
        try:
            return [m["text"] for m in pattern_test(params=data["params"], text=data["regex_test"])]
        except engine.RuleParamsError:
            return None  # the model's validation shows the message on the field

    def _update_errors(self, errors: ValidationError) -> None:
        # The engine's message is about one parameter: show it on that parameter's field.
        error_dict = getattr(errors, "error_dict", None)
        if error_dict and "params" in error_dict and not self.json_wins:
            field = self._field_at_fault()
            if field is not None:
                error_dict[field] = error_dict.pop("params")
        super()._update_errors(errors)  # type: ignore[misc]

    def _field_at_fault(self) -> str | None:
        kind = self.cleaned_data.get("kind") or ""
        try:
            engine.validate_params(kind, self.cleaned_data.get("params") or {})
        except engine.RuleParamsError as exc:
            by_name = {p.name: p.field for p in KIND_PARAMS.get(kind, ())}
            return by_name.get(exc.param or "")
        return None


def pattern_test(*, params: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Where a regex rule with these params matches ``text``, found by the engine itself
    (its validation, compile and scan). Raises ``RuleParamsError`` with its message."""
    clean = engine.validate_params("regex", params)
    spec = engine.RuleSpec(
        id="test",
        name="test",
        kind="regex",
        params=clean,
        stages=frozenset({"input"}),
        action="flag",
    )
    result = engine.Policy([spec]).scan(text, "input")
    return [
        {"start": f.start, "end": f.end, "text": text[f.start : f.end]} for f in result.findings
    ]


class RuleFormSet(PaginationInlineFormSet):
    """Rules whose order was left empty go after the others, in the order shown."""

    def clean(self) -> None:
        super().clean()
        forms_ = [
            f
            for f in self.forms
            if f.is_valid() and f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        last = max((f.instance.order for f in forms_ if not f.order_blank), default=-1)
        for form in forms_:
            if form.order_blank:
                last += 1
                form.instance.order = form.cleaned_data["order"] = last


def _kind_fieldset(title: str | None, kinds: tuple[str, ...], fields: list[Any]) -> Any:
    classes = ["sy-rule-params", *(f"sy-rule-kind-{k}" for k in kinds)]
    return (title, {"fields": fields, "classes": classes})


class RuleInline(StackedInline):
    model = Rule
    form = RuleForm
    formset = RuleFormSet
    extra = 0
    ordering = ["order", "id"]
    # Drag a rule by its handle, or type its number: both set ``order``.
    ordering_field = "order"
    hide_ordering_field = False
    fieldsets = [
        (
            None,
            {"fields": [("order", "name"), "kind", "stages", ("action", "severity"), "is_active"]},
        ),
        _kind_fieldset("Keyword", ("keyword",), ["keyword_terms", "keyword_mode"]),
        _kind_fieldset(
            "Regex",
            ("regex",),
            ["regex_pattern", ("regex_case_sensitive", "regex_max_match_length"), "regex_test"],
        ),
        _kind_fieldset("PII", ("pii",), ["pii_types"]),
        _kind_fieldset("Secrets", ("secret",), ["secret_types", "secret_known"]),
        _kind_fieldset(
            "Prompt injection",
            ("prompt_injection",),
            ["injection_languages", "injection_threshold", "injection_layers"],
        ),
        _kind_fieldset("Max length", ("max_length",), ["max_chars"]),
        _kind_fieldset(
            "External moderation API",
            ("external",),
            [
                ("external_base_url", "external_model"),
                ("external_timeout_s", "external_fail_mode"),
                "external_categories",
                ("external_threshold", "external_api_key_secret"),
            ],
        ),
        _kind_fieldset(None, KINDS_WITH_ALLOW, ["allow"]),
        ("Advanced (JSON)", {"fields": ["params"], "classes": ["collapse"]}),
    ]

    class Media:
        js = ["moderation/rule_editor.js"]
