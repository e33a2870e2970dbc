"""Per-user run quotas: who may have more (or fewer) runs queued or running at once than
RUNS_MAX_ACTIVE_PER_OWNER. Editing one takes the agents.*_runquota model permissions."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from unfold.admin import ModelAdmin

from agents.models import RunQuota


@admin.register(RunQuota)
class RunQuotaAdmin(ModelAdmin):
    list_display = ["user", "limit", "updated_at"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]
    list_select_related = ["user"]

    @admin.display(description="runs queued or running at once", ordering="max_active_runs")
    def limit(self, quota: RunQuota) -> str:
        if quota.max_active_runs is None:
            return f"default ({settings.RUNS_MAX_ACTIVE_PER_OWNER or 'unlimited'})"
        return str(quota.max_active_runs or "unlimited")
