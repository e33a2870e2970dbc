"""Reads of webhook endpoints and deliveries, scoped to what the caller may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.permissions import has_perms
from webhooks.models import WebhookDelivery, WebhookEndpoint


def endpoint_list(user: Any) -> QuerySet[WebhookEndpoint]:
    """The caller's own endpoints; with webhooks.view_webhookendpoint, everyone's."""
    qs = WebhookEndpoint.objects.select_related("owner", "agent")
    if has_perms(user, "webhooks.view_webhookendpoint"):
        return qs
    return qs.filter(owner=user)


def endpoint_get(user: Any, endpoint_id: Any) -> WebhookEndpoint | None:
    try:
        return endpoint_list(user).filter(pk=endpoint_id).first()
    except (ValueError, TypeError):
        return None


def delivery_list(user: Any) -> QuerySet[WebhookDelivery]:
    endpoints = endpoint_list(user)
    return WebhookDelivery.objects.filter(endpoint__in=endpoints.values("pk"))
