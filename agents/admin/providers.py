"""The admin of providers, price overrides and the model-call ledger."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from unfold.admin import ModelAdmin
from unfold.decorators import action

from agents.models import ModelCall, PriceOverride, Provider
from core.display import run_id_cell, when
from core.errors import ApplicationError


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
