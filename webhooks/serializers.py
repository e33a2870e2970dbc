from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.serializers import StrictBooleanField, StrictCharField, StrictSerializer
from webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint


class EndpointSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    rotation_overlap_until = serializers.DateTimeField(
        source="previous_secret_valid_until", read_only=True, allow_null=True
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "owner",
            "url",
            "description",
            "events",
            "agent",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "rotation_overlap_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.SerializerMethodField(
        help_text="The signing secret (whsec_...), returned only in this response."
    )

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, endpoint: WebhookEndpoint) -> str:
        return str(self.context["secret"])


class EndpointCreateSerializer(StrictSerializer):
    url = StrictCharField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), allow_empty=False, max_length=20
    )
    agent = serializers.SlugField(required=False, allow_null=True)
    description = StrictCharField(required=False, allow_blank=True, max_length=200)


class EndpointUpdateSerializer(StrictSerializer):
    url = StrictCharField(required=False, max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        allow_empty=False,
        max_length=20,
        required=False,
    )
    agent = serializers.SlugField(required=False, allow_null=True)
    description = StrictCharField(required=False, allow_blank=True, max_length=200)
    is_active = StrictBooleanField(required=False)


class DeliverySerializer(serializers.ModelSerializer):
    endpoint = serializers.UUIDField(source="endpoint_id", read_only=True)
    webhook_id = serializers.CharField(source="message_id", read_only=True)
    run = serializers.UUIDField(source="run_id", read_only=True, allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_type",
            "webhook_id",
            "run",
            "status",
            "attempts",
            "next_attempt_at",
            "last_attempt_at",
            "delivered_at",
            "last_status_code",
            "last_error",
            "response_excerpt",
            "payload",
            "created_at",
        ]
        read_only_fields = fields
