"""Admin for moderation: policies with their (validated) rules, and the triage queue."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin

from core.display import run_id_cell, severity_badge, when
from core.errors import ApplicationError
from moderation import engine
from moderation.models import Flag, Policy
from moderation.policy_services import policy_rules_renumber
from moderation.rule_editor import TEST_TEXT_MAX, RuleForm, RuleInline, pattern_test
from moderation.selectors import AGES, flag_age_filter, flag_queue
from moderation.services import flag_resolve, flags_resolve


class PatternTestForm(forms.Form):
    pattern = forms.CharField(required=False, strip=False)
    case_sensitive = forms.BooleanField(required=False)
    max_match_length = forms.IntegerField(required=False)
    text = forms.CharField(required=False, strip=False, max_length=TEST_TEXT_MAX)


@admin.register(Policy)
class PolicyAdmin(ModelAdmin):
    list_display = ["name", "fail_mode", "rule_count", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [RuleInline]

    @admin.display(description="rules")
    def rule_count(self, policy: Policy) -> int:
        return policy.rules.count()

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(require_POST(self.pattern_test_view))
        return [
            path("pattern-test/", view, name="moderation_policy_pattern_test"),
            *super().get_urls(),
        ]

    def pattern_test_view(self, request: HttpRequest) -> HttpResponse:
        """The rule editor's "Test pattern": where the engine matches a sample, or its error."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        form = PatternTestForm(request.POST)
        if not form.is_valid():
            return JsonResponse({"error": "The test text is too long."}, status=400)
        data = form.cleaned_data
        params: dict[str, Any] = {
            "pattern": data["pattern"],
            "case_sensitive": data["case_sensitive"],
        }
        if data["max_match_length"] is not None:
            params["max_match_length"] = data["max_match_length"]
        try:
            matches = pattern_test(params=params, text=data["text"])
        except engine.RuleParamsError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        return JsonResponse({"matches": matches})

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Typed numbers may collide (every new rule used to get 0): make them sequential.
        policy_rules_renumber(policy=form.instance)
        for formset in formsets:
            for rule_form in getattr(formset, "forms", []):
                if isinstance(rule_form, RuleForm) and rule_form.test_matches is not None:
                    self.message_user(request, _test_message(rule_form), messages.INFO)


def _test_message(form: RuleForm) -> str:
    found = form.test_matches or []
    name = form.cleaned_data.get("name", "")
    if not found:
        return f"Rule {name!r}: the pattern does not match the test text."
    shown = ", ".join(f"«{m}»" for m in found[:10])
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    return f"Rule {name!r}: {len(found)} match(es) in the test text: {shown}{more}."


class AgeListFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("hour", "Last hour"),
            ("day", "Last day"),
            ("week", "Last week"),
            ("older", "Older than a week"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Flag]) -> QuerySet[Flag]:
        value = self.value()
        if value in AGES or value == "older":
            return queryset.filter(flag_age_filter(value))
        return queryset


class FlagForm(forms.ModelForm):
    """The single-flag review: a decision, a note and, for a false positive whose value
    may be kept, allow-listing it in the same step."""

    status = forms.ChoiceField(choices=Flag.Status.choices)
    allow_list = forms.BooleanField(
        required=False,
        label="Add the matched value to the rule's allow list",
        help_text="Only with 'Dismissed'. Keyword, regex and prompt-injection flags only; "
        "for PII and secrets edit the rule's allow list by hand.",
    )

    class Meta:
        model = Flag
        fields = ["status", "note"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("allow_list"):
            if data.get("status") != Flag.Status.DISMISSED:
                self.add_error("allow_list", "Only a dismissed flag can allow-list its value.")
            elif not self.instance.allow_candidate or self.instance.rule_id is None:
                self.add_error("allow_list", "This flag's value cannot be allow-listed.")
        return data


def _bulk(decision: str, label: str) -> Any:
    @admin.action(description=f"{label} selected flags", permissions=["change"])
    def action(modeladmin: FlagAdmin, request: HttpRequest, queryset: QuerySet[Flag]) -> None:
        count = flags_resolve(
            flag_ids=queryset.values_list("pk", flat=True), decision=decision, reviewer=request.user
        )
        modeladmin.message_user(request, f"{count} flag(s) marked {decision}.", messages.SUCCESS)

    action.__name__ = f"mark_{decision}"
    return action


@admin.register(Flag)
class FlagAdmin(ModelAdmin):
    form = FlagForm
    # The finding first (severity, excerpt, run), then where it came from; fits 1280 px.
    list_display = [
        "status",
        "severity_badge",
        "short_excerpt",
        "run_link",
        "agent",
        "rule_name",
        "stage_action",
        "created",
    ]
    list_display_links = ["short_excerpt"]
    list_filter = [
        "status",
        "severity",
        "stage",
        "kind",
        ("agent", admin.RelatedOnlyFieldListFilter),
        ("rule", admin.RelatedOnlyFieldListFilter),
        AgeListFilter,
    ]
    list_select_related = ["agent", "reviewer"]
    search_fields = ["rule_name", "kind", "excerpt", "note"]
    actions = [
        _bulk(Flag.Status.DISMISSED, "Dismiss (false positive)"),
        _bulk(Flag.Status.CONFIRMED, "Confirm"),
        _bulk(Flag.Status.ESCALATED, "Escalate"),
    ]
    readonly_fields = [
        "run_link",
        "agent",
        "rule",
        "rule_name",
        "stage",
        "kind",
        "action",
        "severity",
        "excerpt",
        "created_at",
        "reviewer",
        "reviewed_at",
    ]
    fieldsets = [
        (
            "Finding",
            {
                "fields": [
                    "run_link",
                    "agent",
                    ("rule", "rule_name"),
                    ("stage", "kind", "action", "severity"),
                    "excerpt",
                    "created_at",
                ]
            },
        ),
        ("Review", {"fields": ["status", "allow_list", "note", "reviewer", "reviewed_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Flag]:
        # Not super(): it orders by get_ordering() before "open_rank" exists.
        return flag_queue(self.model._default_manager.get_queryset())

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Open flags first, then newest; "open_rank" is annotated by flag_queue.
        return ["open_rank", "-created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # flags come from runs only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the audit trail of a run; deleted with the run

    @admin.display(description="run")
    def run_link(self, flag: Flag) -> str:
        return run_id_cell(flag.run_id)

    @admin.display(description="excerpt")
    def short_excerpt(self, flag: Flag) -> str:
        return flag.excerpt if len(flag.excerpt) <= 80 else flag.excerpt[:79] + "…"

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, flag: Flag) -> str:
        return severity_badge(flag.severity)

    @admin.display(description="stage / action")
    def stage_action(self, flag: Flag) -> str:
        return f"{flag.stage} / {flag.action}"

    @admin.display(description="created", ordering="created_at")
    def created(self, flag: Flag) -> str:
        return when(flag.created_at)

    def save_model(self, request: HttpRequest, obj: Flag, form: Any, change: bool) -> None:
        # Decisions go through the service (reviewer, time, allow-list), never a raw save.
        old = Flag.objects.get(pk=obj.pk)
        decision = form.cleaned_data["status"]
        note = form.cleaned_data.get("note", "")
        if decision == Flag.Status.OPEN:
            # Re-opening is not a decision; still record who did it and when.
            if old.status != Flag.Status.OPEN or note != old.note:
                Flag.objects.filter(pk=obj.pk).update(
                    status=decision, note=note, reviewer=request.user, reviewed_at=timezone.now()
                )
            return
        if decision == old.status and note == old.note and not form.cleaned_data["allow_list"]:
            return
        try:
            flag_resolve(
                flag=obj,
                decision=decision,
                note=note,
                reviewer=request.user,
                allow_list_entry=form.cleaned_data["allow_list"],
            )
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
