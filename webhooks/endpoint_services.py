"""Writes of webhook endpoints: the URL check (SSRF), create, update, secret rotation, delete."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from core.address_policy import address_refusal
from core.errors import ApplicationError
from core.safe_http import RequestRefused, check_url
from secrets_vault.services import secret_create, secret_delete, secret_rotate
from webhooks.models import (
    EVENT_TYPES,
    WebhookEndpoint,
)
from webhooks.signing import new_secret

log = structlog.get_logger(__name__)

PRIVATE_NETWORKS_SETTING = "WEBHOOK_ALLOW_PRIVATE_NETWORKS"


def endpoint_url_check(url: str) -> str:
    """The URL, stripped, if webhooks may be sent to it; else an ``invalid_url`` error."""
    if not isinstance(url, str) or not url.strip():
        raise ApplicationError("invalid_url", "url is required.", details={"field": "url"})
    url = url.strip()
    try:
        parsed = check_url(url, allowed_hosts=[httpx.URL(url).host or "-"])
    except (RequestRefused, httpx.InvalidURL, ValueError) as exc:
        raise ApplicationError("invalid_url", str(exc), details={"field": "url"}) from None
    # An IP literal can be judged now; host names are resolved and checked at every send.
    try:
        import ipaddress

        literal = ipaddress.ip_address(parsed.host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and (reason := address_refusal(literal, PRIVATE_NETWORKS_SETTING)):
        raise ApplicationError(
            "invalid_url",
            f"{literal} is a {reason} address; list its network in "
            f"{PRIVATE_NETWORKS_SETTING} to allow it.",
            details={"field": "url"},
        )
    return url


def _validate_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ApplicationError(
            "invalid_events",
            "events must be a non-empty list of event types.",
            details={"field": "events", "known": list(EVENT_TYPES)},
        )
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ApplicationError(
            "invalid_events",
            f"Unknown event types: {', '.join(unknown)}.",
            details={"field": "events", "known": list(EVENT_TYPES)},
        )
    return sorted(set(events), key=EVENT_TYPES.index)


def endpoint_create(
    *,
    owner: Any,
    url: str,
    events: list[str],
    agent: Agent | None = None,
    description: str = "",
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint and its signing secret (in the vault). Returns the endpoint and
    the secret, which is shown this once."""
    url = endpoint_url_check(url)
    events = _validate_events(events)
    secret = new_secret()
    endpoint_id = uuid.uuid4()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            id=endpoint_id,
            owner=owner,
            url=url,
            events=events,
            agent=agent,
            description=description,
            secret_name=f"webhook-{endpoint_id.hex}",
        )
        secret_create(
            name=endpoint.secret_name,
            value=secret,
            description=f"Signing secret of webhook endpoint {endpoint_id}",
            show_hint=False,
            actor=owner,
        )
    log.info("webhook_endpoint_created", endpoint=str(endpoint.id), owner=str(owner.pk))
    return endpoint, secret


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Change url, events, agent, description or is_active; re-enabling clears the reason
    it was disabled and its failure count."""
    if "url" in changes:
        endpoint.url = endpoint_url_check(changes.pop("url"))
    if "events" in changes:
        endpoint.events = _validate_events(changes.pop("events"))
    if "agent" in changes:
        endpoint.agent = changes.pop("agent")
    if "description" in changes:
        endpoint.description = changes.pop("description")
    if "is_active" in changes:
        active = bool(changes.pop("is_active"))
        if active and not endpoint.is_active:
            endpoint.consecutive_failures = 0
            endpoint.disabled_reason = ""
            endpoint.disabled_at = None
        endpoint.is_active = active
    if changes:
        raise ApplicationError("invalid_request", f"Unknown fields: {', '.join(sorted(changes))}.")
    endpoint.save()
    return endpoint


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint, actor: Any) -> str:
    """A new signing secret; the old one keeps signing too for WEBHOOK_SECRET_OVERLAP_HOURS,
    so receivers can switch without missing a delivery. Returns the new secret, once."""
    secret = new_secret()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        rotated = secret_rotate(secret=locked.secret_name, value=secret, actor=actor)
        locked.previous_secret_version = rotated.version - 1
        locked.previous_secret_valid_until = timezone.now() + timedelta(
            hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS
        )
        locked.save(update_fields=["previous_secret_version", "previous_secret_valid_until"])
    endpoint.refresh_from_db()
    return secret


def endpoint_delete(*, endpoint: WebhookEndpoint, actor: Any) -> None:
    from secrets_vault.models import Secret

    with transaction.atomic():
        secret = Secret.objects.filter(name=endpoint.secret_name).first()
        endpoint.delete()
        if secret is not None:
            secret_delete(secret=secret, actor=actor)
