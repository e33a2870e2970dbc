"""Webhook endpoints and their deliveries (the delivery log)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

# The event types an endpoint may subscribe to: the run stream's terminal events, plus
# moderation flags and budget thresholds (80 % and 100 % of an agent's monthly budget).
RUN_EVENT_TYPES = ("run.succeeded", "run.failed", "run.cancelled", "run.timed_out", "run.blocked")
EVENT_TYPES = (*RUN_EVENT_TYPES, "moderation.flagged", "budget.threshold")
TEST_EVENT_TYPE = "webhook.test"


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Event types to deliver, e.g. run.failed.")
    agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text="Only this agent's events (empty: every agent's).",
    )
    is_active = models.BooleanField(default=True)
    # The signing secret lives in the vault under this name; only its versions change.
    secret_name = models.CharField(max_length=100, unique=True, editable=False)
    # During a rotation's overlap both the old and the new version sign every delivery.
    previous_secret_version = models.PositiveIntegerField(null=True, blank=True, editable=False)
    previous_secret_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["is_active"], name="webhook_endpoint_active")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # every attempt of the schedule failed, or the URL is refused

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=40)
    # The Standard Webhooks ``webhook-id``: the same for every attempt and redelivery, so a
    # receiver can de-duplicate.
    message_id = models.CharField(max_length=60, editable=False)
    payload = models.JSONField()
    run = models.ForeignKey(
        "agents.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # An attempt in progress holds the row until then, so two dispatchers never send it twice.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.endpoint_id} ({self.status})"


class BudgetAlert(models.Model):
    """One row per agent, month and threshold crossed: each is announced once."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    month = models.DateField()
    threshold = models.PositiveSmallIntegerField()  # percent
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "month", "threshold"], name="budget_alert_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.month:%Y-%m} {self.threshold}%"
