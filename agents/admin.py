from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from agents.models import Agent, Provider, Run, RunEvent, Thread


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "timeout_s", "max_retries"]
    list_filter = ["kind"]
    search_fields = ["name"]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "provider", "model_name", "is_active", "version"]
    list_filter = ["is_active", "provider"]
    search_fields = ["slug", "name"]
    readonly_fields = ["version", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "is_active", "version"]}),
        (
            "Model",
            {"fields": ["provider", "model_name", "instructions", "tools", "model_settings"]},
        ),
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
        from agents.services import agent_save

        agent_save(agent=obj, changed=change)


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = ["seq", "type", "data", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["seq"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "agent",
        "owner",
        "status",
        "created_at",
        "duration",
        "tokens",
        "cost_usd",
    ]
    list_filter = ["status", "agent"]
    search_fields = ["id", "input", "owner__username"]
    date_hierarchy = "created_at"
    inlines = [RunEventInline]
    list_select_related = ["agent", "owner"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Run._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only detail: viewing is allowed, saving is not.
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    @admin.display(description="duration (s)")
    def duration(self, run: Run) -> str:
        return f"{run.duration_s:.2f}" if run.duration_s is not None else "-"

    @admin.display(description="tokens in/out")
    def tokens(self, run: Run) -> str:
        return f"{run.input_tokens}/{run.output_tokens}"


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "owner", "title", "created_at"]
