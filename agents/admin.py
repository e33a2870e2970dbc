from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin
from unfold.decorators import action

from agents.lifecycle import is_terminal
from agents.models import Agent, ModelCall, PriceOverride, Provider, Run, RunEvent, Thread
from core.display import budget_row, run_id_cell, status_badge, when
from core.errors import ApplicationError

# The live view renders at most this many stored events; the page's script fetches the
# rest over the WebSocket (a 10,000-delta run stays a light page).
TIMELINE_MAX_EVENTS = 2000


@admin.register(Provider)
class ProviderAdmin(ModelAdmin):
    list_display = ["name", "kind", "base_url", "api_key", "timeout_s", "max_retries"]
    list_filter = ["kind"]
    search_fields = ["name"]
    autocomplete_fields = ["api_key"]
    actions_detail = ["check_connection"]

    @action(
        description="Check connection",
        url_path="check-connection",
        permissions=["change"],
    )
    def check_connection(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One cheap authenticated request to the provider; the outcome as a message."""
        from agents.provider_services import provider_check

        provider = get_object_or_404(Provider, pk=object_id)
        try:
            result = provider_check(provider=provider, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, f"{provider.name}: {exc.message}")
        else:
            if result["ok"]:
                messages.success(
                    request, f"{provider.name}: connected in {result['latency_ms']} ms."
                )
            else:
                status = f" (HTTP {result['status']})" if result["status"] else ""
                messages.error(request, f"{provider.name}{status}: {result['error']['message']}")
        return HttpResponseRedirect(reverse("admin:agents_provider_change", args=[provider.pk]))


@admin.register(PriceOverride)
class PriceOverrideAdmin(ModelAdmin):
    """Prices for models genai-prices does not know; an override wins over the table."""

    list_display = [
        "model_name",
        "provider",
        "input_per_mtok_usd",
        "output_per_mtok_usd",
        "cached_input_per_mtok_usd",
        "updated_at",
    ]
    list_filter = ["provider"]
    search_fields = ["model_name"]


@admin.register(ModelCall)
class ModelCallAdmin(ModelAdmin):
    """The cost ledger, read-only: one row per model request."""

    list_display = [
        "created",
        "agent",
        "model",
        "cost",
        "tokens",
        "price_source",
        "latency",
        "run_link",
    ]
    list_display_links = None
    list_filter = ["agent", "model", "price_source", "usage_estimated"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    list_select_related = ["agent", "run"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="time", ordering="created_at")
    def created(self, call: ModelCall) -> str:
        return when(call.created_at)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, call: ModelCall) -> str:
        return f"${call.cost_usd:.6f}" + (" ~" if call.usage_estimated else "")

    @admin.display(description="tokens in/out/cached")
    def tokens(self, call: ModelCall) -> str:
        return f"{call.input_tokens}/{call.output_tokens}/{call.cached_tokens}"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, call: ModelCall) -> str:
        return f"{call.latency_ms:.0f} ms"

    @admin.display(description="run")
    def run_link(self, call: ModelCall) -> str:
        return run_id_cell(call.run_id)


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


class TestRunForm(forms.Form):
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=32_000)


@admin.register(Run)
class RunAdmin(ModelAdmin):
    # Narrow columns, the deciding ones first: fits 1280 px with the sidebar open.
    list_display = ["run_id", "status_badge", "agent", "created", "duration", "tokens", "cost"]
    list_display_links = None  # the short id links; the copy button must not navigate
    list_filter = ["status", "agent"]
    search_fields = ["id", "input", "owner__username"]
    date_hierarchy = "created_at"
    # The timeline of the live view replaces the raw event rows.
    list_select_related = ["agent", "owner"]
    actions = ["cancel_runs"]
    change_form_template = "admin/agents/run/live.html"

    # The timeline comes first on the page; the rest is reference, most of it folded.
    fieldsets = [
        (None, {"fields": ["agent", "agent_version", "owner", "status", "input", "output"]}),
        (
            "Outcome",
            {"fields": ["error_code", "error_message", "created_at", "started_at", "finished_at"]},
        ),
        (
            "Usage",
            {
                "fields": [
                    "requests",
                    "input_tokens",
                    "output_tokens",
                    "tool_calls",
                    "cost_usd",
                    "usage_estimated",
                ]
            },
        ),
        (
            "Details",
            {
                "classes": ["collapse"],
                "fields": [
                    "id",
                    "thread",
                    "parent",
                    "depth",
                    "attempt",
                    "limits",
                    "config",
                    "idempotency_key",
                    "heartbeat_at",
                    "cancel_requested_at",
                ],
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Run._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only detail: viewing is allowed, saving is not.
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(require_POST(self.cancel_view))
        summary = self.admin_site.admin_view(self.summary_view)
        return [
            path("<path:object_id>/cancel/", view, name="agents_run_cancel"),
            path("<path:object_id>/summary/", summary, name="agents_run_summary"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if run is not None:
            extra.update(live_view_context(run))
        return super().change_view(request, object_id, form_url, extra)

    def summary_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The run's fields as the live view shows them, re-read when a run event arrives."""
        run = get_object_or_404(
            Run.objects.select_related("agent", "owner", "parent"), pk=object_id
        )
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return JsonResponse(run_summary(run))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = get_object_or_404(Run, pk=object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        self._cancel(request, run)
        return HttpResponseRedirect(reverse("admin:agents_run_change", args=[run.pk]))

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: Any) -> None:
        for run in queryset:
            self._cancel(request, run)

    def _cancel(self, request: HttpRequest, run: Run) -> None:
        from agents.services import run_cancel

        try:
            status = run_cancel(run_id=run.pk, actor=request.user)
        except ApplicationError as exc:
            messages.warning(request, f"{run.pk}: {exc.message}")
        else:
            messages.success(request, f"{run.pk}: {status}.")

    @admin.display(description="run", ordering="id")
    def run_id(self, run: Run) -> str:
        return run_id_cell(run.pk)

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: Run) -> str:
        return status_badge(run.status)

    @admin.display(description="created", ordering="created_at")
    def created(self, run: Run) -> str:
        return when(run.created_at)

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        return f"{run.duration_s:.2f} s" if run.duration_s is not None else "-"

    @admin.display(description="tokens in/out")
    def tokens(self, run: Run) -> str:
        return f"{run.input_tokens}/{run.output_tokens}"

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, run: Run) -> str:
        return f"${run.cost_usd:.6f}"


@admin.register(Thread)
class ThreadAdmin(ModelAdmin):
    list_display = ["id", "agent", "owner", "title", "created_at"]


def timeline(events: list[RunEvent]) -> list[dict[str, Any]]:
    """Events as the live view shows them: a message's deltas joined into its text."""
    items: list[dict[str, Any]] = []
    open_message: dict[str, Any] | None = None
    for event in events:
        data = event.data or {}
        if event.type == "message.delta":
            if open_message is None:
                at = event.created_at.strftime("%H:%M:%S.%f")[:-3]
                open_message = {"kind": "message", "seq": event.seq, "at": at, "text": ""}
                items.append(open_message)
            open_message["text"] += data.get("delta", "")
            continue
        if event.type == "message.completed":
            if open_message is None:
                at = event.created_at.strftime("%H:%M:%S.%f")[:-3]
                items.append({"kind": "message", "seq": event.seq, "at": at, "text": ""})
                open_message = items[-1]
            open_message["text"] = data.get("content", open_message["text"])
            open_message = None
            continue
        open_message = None
        if event.type == "run.succeeded":
            # The output is shown once, in the run's Output field.
            data = {k: v for k, v in data.items() if k != "output"}
        items.append(
            {
                "kind": event.type.split(".")[0],
                "type": event.type,
                "seq": event.seq,
                "at": event.created_at.strftime("%H:%M:%S.%f")[:-3],
                "data": json.dumps(data, ensure_ascii=False) if data else "",
            }
        )
    return items


def mark_final_answer(items: list[dict[str, Any]], output: str) -> None:
    """Fold the message that is the run's output: the Output field already shows it."""
    for item in reversed(items):
        if item["kind"] == "message":
            item["final"] = bool(output) and item["text"] == output
            return


TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# The kinds the timeline filter offers, in the order they appear in a run.
TIMELINE_KINDS = ["run", "message", "tool", "moderation", "usage"]


def _time(value: datetime | None) -> str:
    return timezone.localtime(value).strftime(TIME_FORMAT) if value else "-"


def _seconds(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.2f} s" if start and end else "-"


def _run_link(run: Run) -> dict[str, str]:
    return {
        "id": str(run.pk),
        "short": str(run.pk)[:8],
        "url": reverse("admin:agents_run_change", args=[run.pk]),
        "status": run.status,
        "agent": run.agent.slug,
    }


def run_summary(run: Run) -> dict[str, Any]:
    """Every field of the run detail, formatted; the live view swaps them in place."""
    children = run.children.select_related("agent").order_by("created_at")
    return {
        "status": run.status,
        "terminal": is_terminal(run.status),
        "agent": run.agent.slug,
        "agent_version": str(run.config.get("agent_version", "-")),
        "owner": run.owner.get_username(),
        "created_at": _time(run.created_at),
        "started_at": _time(run.started_at),
        "finished_at": _time(run.finished_at),
        "queue_wait": _seconds(run.created_at, run.started_at),
        "duration": _seconds(run.started_at, run.finished_at),
        "requests": str(run.requests),
        "input_tokens": str(run.input_tokens),
        "output_tokens": str(run.output_tokens),
        "tool_calls": str(run.tool_calls),
        "cost_usd": f"${run.cost_usd:.6f}" + (" (estimated)" if run.usage_estimated else ""),
        "output": run.output,
        "error": f"{run.error_code}: {run.error_message}" if run.error_code else "",
        "parent": _run_link(run.parent) if run.parent_id else None,
        "children": [_run_link(child) for child in children],
    }


def live_view_context(run: Run) -> dict[str, Any]:
    events = list(run.events.order_by("seq")[:TIMELINE_MAX_EVENTS])
    last_seq = events[-1].seq if events else 0
    finished = is_terminal(run.status) and len(events) < TIMELINE_MAX_EVENTS
    items = timeline(events)
    if finished:
        mark_final_answer(items, run.output)
    return {
        "timeline": items,
        "live": {
            "run": str(run.pk),
            "after": last_seq,
            "finished": finished,
            "status": run.status,
            "wsPath": f"/ws/runs/{run.pk}/",
            "summaryUrl": reverse("admin:agents_run_summary", args=[run.pk]),
        },
        "cancel_url": reverse("admin:agents_run_cancel", args=[run.pk]),
        "summary": run_summary(run),
        "timeline_kinds": TIMELINE_KINDS,
        "limits_json": json.dumps(run.limits, indent=1),
        "config_json": json.dumps(run.config, indent=1, ensure_ascii=False),
    }
