"""The webhook pages of the console: endpoints and the delivery log, with their actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from webhooks.endpoint_services import endpoint_create
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import delivery_send_test

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def bob_admin(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def test_an_endpoint_added_in_the_admin_shows_its_secret_once(bob: Any, bob_admin: Client) -> None:
    response = bob_admin.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {
            "owner": bob.pk,
            "url": "http://127.0.0.1:9/hook",
            "description": "ops",
            "events": ["run.failed", "budget.threshold"],
            "is_active": "on",
        },
        follow=True,
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["run.failed", "budget.threshold"]
    assert b"whsec_" in response.content  # the confirmation shows it this once
    page = bob_admin.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert page.status_code == 200 and b"whsec_" not in page.content


def test_the_delivery_log_lists_and_redelivers(bob: Any, bob_admin: Client) -> None:
    endpoint, _ = endpoint_create(owner=bob, url="http://127.0.0.1:9/", events=["run.failed"])
    delivery = delivery_send_test(endpoint=endpoint)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=8)
    listing = bob_admin.get(reverse("admin:webhooks_webhookdelivery_changelist"))
    assert listing.status_code == 200 and b"webhook.test" in listing.content
    bob_admin.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "redeliver", "_selected_action": [str(delivery.pk)]},
    )
    delivery.refresh_from_db()
    assert delivery.status in ("pending", "failed") and delivery.attempts >= 8
    assert delivery.attempts == 9 or delivery.next_attempt_at is not None


def test_an_invalid_url_in_the_admin_is_an_error_not_a_500(bob: Any, bob_admin: Client) -> None:
    response = bob_admin.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"owner": bob.pk, "url": "ftp://example.com/", "events": ["run.failed"]},
    )
    assert response.status_code == 200
    assert not WebhookEndpoint.objects.exists()
