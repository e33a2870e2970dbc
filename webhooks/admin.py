"""Webhook endpoints and the delivery log in the console, with send-test and redeliver."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from unfold.admin import ModelAdmin

from core.errors import ApplicationError
from webhooks import endpoint_services, services
from webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in EVENT_TYPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["owner", "url", "description", "events", "agent", "is_active"]

    def clean_url(self) -> str:
        # The service's own check (http(s) only, no credentials, no private literal), so
        # the form says what the API says instead of failing on save.
        try:
            return endpoint_services.endpoint_url_check(self.cleaned_data["url"])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ModelAdmin):
    form = EndpointForm
    list_display = ["url", "owner", "event_list", "agent", "is_active", "disabled_reason"]
    list_filter = ["is_active"]
    search_fields = ["url", "description", "owner__username"]
    readonly_fields = [
        "consecutive_failures",
        "disabled_reason",
        "disabled_at",
        "previous_secret_valid_until",
        "created_at",
        "updated_at",
    ]
    actions = ["send_test"]

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        try:
            if change:
                endpoint_services.endpoint_update(
                    endpoint=obj,
                    url=data["url"],
                    events=list(data["events"]),
                    agent=data.get("agent"),
                    description=data.get("description", ""),
                    is_active=data.get("is_active", True),
                )
                return
            endpoint, secret = endpoint_services.endpoint_create(
                owner=data["owner"],
                url=data["url"],
                events=list(data["events"]),
                agent=data.get("agent"),
                description=data.get("description", ""),
            )
        except ApplicationError as exc:  # a race with the form's checks: say so, keep nothing
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = endpoint.pk
        # Shown this once, as the API does; the vault keeps only its ciphertext.
        self.message_user(
            request, f"Signing secret (shown once, copy it now): {secret}", messages.WARNING
        )

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        endpoint_services.endpoint_delete(endpoint=obj, actor=request.user)

    @admin.action(description="Send a test delivery", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            services.delivery_send_test(endpoint=endpoint)
        self.message_user(request, f"Test deliveries queued for {queryset.count()} endpoint(s).")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ModelAdmin):
    list_display = [
        "created_at",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "short_excerpt",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id", "endpoint__url"]
    list_select_related = ["endpoint"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["redeliver"]

    @admin.display(description="response")
    def short_excerpt(self, delivery: WebhookDelivery) -> str:
        text = delivery.last_error or delivery.response_excerpt
        return text[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.change_webhookendpoint")

    @admin.action(description="Redeliver (same webhook-id)", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            services.delivery_redeliver(delivery=delivery)
        self.message_user(request, f"{queryset.count()} delivery(ies) queued again.")
