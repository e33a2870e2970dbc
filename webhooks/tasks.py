"""Celery tasks of the webhooks: thin, they take ids and call one service."""

from __future__ import annotations

import uuid

from celery import shared_task


@shared_task(name="webhooks.deliver", ignore_result=True)
def deliver_webhook_task(delivery_id: str) -> str | None:
    from webhooks.services import delivery_attempt

    return delivery_attempt(delivery_id=uuid.UUID(delivery_id))


@shared_task(name="webhooks.dispatch_due", ignore_result=True)
def dispatch_due_webhooks_task() -> int:
    from webhooks.services import deliveries_dispatch_due

    return deliveries_dispatch_due()
