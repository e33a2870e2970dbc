"""The run and thread admin: the run list, the live view and its timeline, threads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin

from agents.lifecycle import is_terminal
from agents.models import Run, RunEvent, Thread
from core.display import run_id_cell, status_badge, when
from core.errors import ApplicationError

# The live view renders at most this many stored events; the page's script fetches the
# rest over the WebSocket (a 10,000-delta run stays a light page).
TIMELINE_MAX_EVENTS = 2000


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
