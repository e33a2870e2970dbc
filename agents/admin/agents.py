"""The agent admin: the form (tools, model settings), versions and the agent page's panel."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin

from agents.models import Agent
from core.display import budget_row, run_id_cell, status_badge
from core.errors import ApplicationError

# pydantic-ai's common model settings, shown as fields; anything else stays in the JSON.
MODEL_SETTING_NAMES = ("temperature", "max_tokens", "top_p", "seed")


def _tool_choices() -> list[tuple[str, str]]:
    from agents.tools import all_tools

    return [
        (
            name,
            format_html(
                "<strong>{}</strong> <span class='sy-muted'>{}</span>", name, spec.description
            ),
        )
        for name, spec in sorted(all_tools().items())
    ]


class TestRunForm(forms.Form):
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=32_000)


class AgentForm(forms.ModelForm):
    """Tools as a checklist from the registry, the known model settings as fields; the raw
    JSON of the model settings stays available as the advanced field."""

    tools = forms.MultipleChoiceField(
        choices=_tool_choices,
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "sy-checklist"}),
        help_text="The tools the agent may call (docs/tools.md).",
    )

    temperature = forms.FloatField(
        required=False, min_value=0, max_value=2, help_text="0 is the most deterministic."
    )
    max_tokens = forms.IntegerField(
        required=False, min_value=1, help_text="The most tokens the model may write per request."
    )
    top_p = forms.FloatField(required=False, min_value=0, max_value=1)
    seed = forms.IntegerField(required=False, help_text="Where the provider supports it.")

    class Meta:
        model = Agent
        fields = ["tools", "model_settings"]
        labels = {"model_settings": "Model settings (advanced, JSON)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.model_settings
        for name in MODEL_SETTING_NAMES:
            if isinstance(current, dict) and name in self.fields:
                self.fields[name].initial = current.get(name)

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or self.cleaned_data
        settings_json = data.get("model_settings")
        if isinstance(settings_json, dict):
            merged = dict(settings_json)
            for name in MODEL_SETTING_NAMES:
                # A field the form shows wins over the JSON; cleared, it removes the key.
                if name in self.changed_data or name not in merged:
                    value = data.get(name)
                    if value is None:
                        merged.pop(name, None)
                    else:
                        merged[name] = value
            data["model_settings"] = merged
        return data


@admin.register(Agent)
class AgentAdmin(ModelAdmin):
    form = AgentForm
    list_display = ["slug", "name", "provider", "model_name", "is_active", "version"]
    list_filter = ["is_active", "provider"]
    search_fields = ["slug", "name"]
    readonly_fields = ["version", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "is_active", "version"]}),
        (
            "Model",
            {
                "fields": [
                    "provider",
                    "model_name",
                    "instructions",
                    "tools",
                    ("temperature", "max_tokens"),
                    ("top_p", "seed"),
                ]
            },
        ),
        (
            "Advanced (JSON)",
            {"classes": ["collapse"], "fields": ["tool_config", "model_settings"]},
        ),
        ("Guardrails", {"fields": ["moderation_policy"]}),
        (
            "Limits and budget",
            {
                "fields": [
                    "max_requests",
                    "max_tool_calls",
                    "max_input_tokens",
                    "max_output_tokens",
                    "max_cost_usd",
                    "timeout_s",
                    "max_concurrent_runs",
                    "monthly_budget_usd",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        from agents.agent_services import agent_save

        agent_save(agent=obj, actor=request.user)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(require_POST(self.test_run_view))
        versions = self.admin_site.admin_view(self.versions_view)
        restore = self.admin_site.admin_view(require_POST(self.restore_view))
        return [
            path("<path:object_id>/test-run/", view, name="agents_agent_test_run"),
            path("<path:object_id>/versions/", versions, name="agents_agent_versions"),
            path(
                "<path:object_id>/versions/<int:number>/restore/",
                restore,
                name="agents_agent_version_restore",
            ),
            *super().get_urls(),
        ]

    def versions_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The version history, with the diff of two versions (?a=&b=, default the last two)."""
        from agents.agent_services import version_diff

        agent = get_object_or_404(Agent, pk=object_id)
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        versions = list(agent.versions.select_related("created_by").order_by("-number"))
        by_number = {v.number: v for v in versions}
        newest = versions[0].number if versions else 0
        a = _int_param(request, "a", newest - 1)
        b = _int_param(request, "b", newest)
        diff = None
        if a in by_number and b in by_number:
            diff = version_diff(by_number[a].config, by_number[b].config)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Versions of {agent.slug}",
            "opts": self.model._meta,
            "original": agent,
            "versions": versions,
            "a": a,
            "b": b,
            "diff": [
                {**d, "old": json.dumps(d["old"], indent=1), "new": json.dumps(d["new"], indent=1)}
                for d in diff or []
            ],
            "compared": diff is not None,
            "can_restore": self.has_change_permission(request, agent),
        }
        return TemplateResponse(request, "admin/agents/agent/versions.html", context)

    def restore_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        from agents.agent_services import agent_version_restore

        agent = get_object_or_404(Agent, pk=object_id)
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        try:
            version = agent_version_restore(agent=agent, number=number, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Restored version {number} as version {version.number}.")
        return HttpResponseRedirect(reverse("admin:agents_agent_versions", args=[agent.pk]))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "test_run_form": TestRunForm()}
        agent = self.get_object(request, object_id)
        if agent is not None:
            extra["agent_panel"] = agent_panel(request, agent)
        return super().change_view(request, object_id, form_url, extra)

    def test_run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Start a run of this agent as the operator, then show its live view."""
        from agents.services import run_create

        agent = get_object_or_404(Agent, pk=object_id)
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        form = TestRunForm(request.POST)
        change_url = reverse("admin:agents_agent_change", args=[agent.pk])
        if not form.is_valid():
            messages.error(request, "Write an input for the test run.")
            return HttpResponseRedirect(change_url)
        try:
            run, _ = run_create(agent=agent, owner=request.user, input=form.cleaned_data["input"])
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(change_url)
        return HttpResponseRedirect(reverse("admin:agents_run_change", args=[run.pk]))


def _int_param(request: HttpRequest, name: str, default: int) -> int:
    try:
        return int(request.GET.get(name, default))
    except ValueError:
        return default


AGENT_PANEL_RUNS = 10


AGENT_PANEL_VERSIONS = 10


def agent_panel(request: HttpRequest, agent: Agent) -> dict[str, Any]:
    """The agent page's overview: recent runs, this month's spend against the budget, the
    error rate over 30 days and the version history with each version's diff."""
    from agents.agent_services import version_diff
    from agents.selectors import agent_budget_use_list, agent_version_list, run_stats
    from agents.services import agent_month_spend, month_start

    now = timezone.now()
    panel: dict[str, Any] = {"spent_usd": agent_month_spend(agent.pk), "budget": None}
    budgets = [b for b in agent_budget_use_list(since=month_start()) if b["agent_id"] == agent.pk]
    if budgets:
        panel["budget"] = budget_row(budgets[0])
    if request.user.has_perm("agents.view_run"):
        stats = run_stats(start=now - timedelta(days=30), end=now, agent=agent)
        runs = stats["runs"]
        failed = runs["failed"] + runs["timed_out"] + runs["blocked"]
        finished = failed + runs["succeeded"]
        panel["stats"] = stats
        panel["error_rate"] = failed / finished if finished else None
        panel["recent_runs"] = [
            {"id": run_id_cell(r.pk), "status": status_badge(r.status), "run": r}
            for r in agent.runs.order_by("-created_at")[:AGENT_PANEL_RUNS]
        ]
    versions = list(agent_version_list(agent)[: AGENT_PANEL_VERSIONS + 1])
    panel["versions"] = [
        {
            "version": v,
            "diff": version_diff(older.config, v.config) if older is not None else [],
            "is_current": i == 0,
        }
        for i, (v, older) in enumerate(
            zip(versions, [*versions[1:], None][: len(versions)], strict=True)
        )
    ][:AGENT_PANEL_VERSIONS]
    return panel
