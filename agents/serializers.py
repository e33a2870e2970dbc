from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.agent_services import EDITABLE_FIELDS
from agents.models import Agent, AgentVersion, Provider, Run, Thread
from core.pagination import MAX_OFFSET
from core.serializers import (
    JSONValueField,
    StrictCharField,
    StrictFieldsMixin,
    StrictIntegerField,
    StrictModelSerializer,
    StrictSerializer,
    money_str,
)
from moderation.models import Policy
from secrets_vault.models import Secret


class AgentSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """What anyone who may run an agent reads (read-only; strict so its schema is closed,
    which tells it apart from AgentConfig in the answers that may be either)."""

    provider = serializers.CharField(source="provider.name")
    provider_kind = serializers.CharField(source="provider.kind")

    class Meta:
        model = Agent
        fields = [
            "slug",
            "name",
            "description",
            "provider",
            "provider_kind",
            "model_name",
            "tools",
            "is_active",
            "version",
            "max_requests",
            "max_tool_calls",
            "timeout_s",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class NameListField(JSONValueField):
    """A JSON list of names; its shape is checked by the model (``Agent.clean``)."""


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(JSONValueField):
    """A JSON object; its shape is checked by the model (``Agent.clean``)."""


class AgentConfigSerializer(StrictModelSerializer):
    """Every field an operator sets in the admin, with the model's names; for writes and
    for readers who may configure agents. Validation beyond the field types is the
    model's own (``Agent.clean``), run by the service."""

    provider = serializers.SlugRelatedField(slug_field="name", queryset=Provider.objects.all())
    provider_kind = serializers.CharField(source="provider.kind", read_only=True)
    moderation_policy = serializers.SlugRelatedField(
        slug_field="name", queryset=Policy.objects.all(), allow_null=True, required=False
    )
    tools = NameListField(required=False, help_text=Agent._meta.get_field("tools").help_text)
    tool_config = JsonObjectField(
        required=False, help_text=Agent._meta.get_field("tool_config").help_text
    )
    model_settings = JsonObjectField(
        required=False, help_text=Agent._meta.get_field("model_settings").help_text
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = [
            *EDITABLE_FIELDS,
            "provider_kind",
            "version",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = ["provider_kind", "version", "created_at", "updated_at", "links"]

    def get_links(self, agent: Agent) -> dict[str, str]:
        base = f"/api/v1/agents/{agent.slug}/"
        return {"self": base, "runs": f"{base}runs/", "versions": f"{base}versions/"}


class ProviderSerializer(StrictModelSerializer):
    """A provider; the API key is the name of a vault secret, never a value."""

    api_key_secret = serializers.SlugRelatedField(
        source="api_key",
        slug_field="name",
        queryset=Secret.objects.all(),
        allow_null=True,
        required=False,
        help_text="The name of the vault secret holding the API key.",
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "api_key_secret",
            "timeout_s",
            "max_retries",
            "extra_headers",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = ["created_at", "updated_at", "links"]

    def get_links(self, provider: Provider) -> dict[str, str]:
        base = f"/api/v1/providers/{provider.name}/"
        return {"self": base, "check": f"{base}check/"}


class ProviderCheckErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ProviderCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    status = serializers.IntegerField(allow_null=True, help_text="The provider's HTTP status.")
    error = ProviderCheckErrorSerializer(required=False)


class AgentVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = AgentVersion
        fields = ["number", "config", "note", "created_by", "created_at"]
        read_only_fields = fields

    def get_created_by(self, version: AgentVersion) -> str | None:
        return version.created_by.get_username() if version.created_by else None


class AgentDeletedSerializer(serializers.Serializer):
    slug = serializers.CharField()
    is_active = serializers.BooleanField()
    detail = serializers.CharField()


class RunLimitsSerializer(StrictSerializer):
    """Per-run limits: whole numbers (and a decimal cost), each positive. The service checks
    each against the agent's ceiling (``merge_limits``)."""

    max_requests = StrictIntegerField(required=False, min_value=1)
    max_tool_calls = StrictIntegerField(required=False, min_value=1)
    max_input_tokens = StrictIntegerField(required=False, min_value=1)
    max_output_tokens = StrictIntegerField(required=False, min_value=1)
    max_cost_usd = serializers.DecimalField(
        required=False, max_digits=12, decimal_places=6, min_value=Decimal("0.000001")
    )
    timeout_s = StrictIntegerField(required=False, min_value=1, help_text="Seconds.")


class RunCreateSerializer(StrictSerializer):
    # The length limit is checked by the service, with its own error code.
    input = StrictCharField(allow_blank=False, trim_whitespace=False)
    thread = serializers.UUIDField(required=False)
    limits = RunLimitsSerializer(
        required=False,
        help_text="Lower the agent's limits for this run; each at most the agent's.",
    )


METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512
BATCH_MAX_INPUTS = 1000


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_VALUE},
        "maxProperties": METADATA_MAX_PAIRS,
        "description": f"At most {METADATA_MAX_PAIRS} string values, keys up to "
        f"{METADATA_MAX_KEY} characters; kept with the run.",
    }
)
class RunMetadataField(serializers.DictField):
    """Labels a caller keeps with a run (an evaluation's case id), as OpenAI's metadata."""

    child = StrictCharField(allow_blank=True, max_length=METADATA_MAX_VALUE, trim_whitespace=False)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        if len(value) > METADATA_MAX_PAIRS:
            raise serializers.ValidationError(f"At most {METADATA_MAX_PAIRS} keys.")
        for key in value:
            if not key or len(key) > METADATA_MAX_KEY or "\x00" in key:
                raise serializers.ValidationError(
                    f"Keys are 1 to {METADATA_MAX_KEY} characters, without NUL."
                )
        return value


class RunBatchItemSerializer(StrictSerializer):
    input = StrictCharField(allow_blank=False, trim_whitespace=False)
    thread = serializers.UUIDField(required=False)
    limits = RunLimitsSerializer(
        required=False,
        help_text="Lower the agent's limits for this run; each at most the agent's.",
    )
    metadata = RunMetadataField(required=False)


class RunBatchCreateSerializer(StrictSerializer):
    # A ListSerializer (its errors are one entry per item); django-stubs lacks its lengths.
    inputs = RunBatchItemSerializer(  # type: ignore[call-arg]
        many=True,
        min_length=1,
        max_length=BATCH_MAX_INPUTS,
        help_text=f"1 to {BATCH_MAX_INPUTS} runs to start, each like a single create's body "
        "(plus optional metadata).",
    )


class RunBatchResultSerializer(serializers.Serializer):
    runs = serializers.ListField(
        child=serializers.UUIDField(), help_text="The runs' ids, in the order of the inputs."
    )


class ThreadCreateSerializer(StrictSerializer):
    agent = serializers.SlugField()
    title = StrictCharField(required=False, allow_blank=True, max_length=200)


class ThreadSerializer(serializers.ModelSerializer):
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    runs = serializers.SerializerMethodField()

    class Meta:
        model = Thread
        fields = ["id", "agent", "title", "created_at", "runs"]
        read_only_fields = fields

    def get_runs(self, thread: Thread) -> list[str]:
        return [str(r) for r in thread.runs.order_by("created_at").values_list("id", flat=True)]


class RunSerializer(serializers.ModelSerializer):
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    error = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()
    agent_version = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "agent",
            "owner",
            "status",
            "input",
            "output",
            "error",
            "usage",
            "thread",
            "parent",
            "agent_version",
            "limits",
            "metadata",
            "attempt",
            "created_at",
            "dispatched_at",
            "started_at",
            "finished_at",
            "links",
        ]
        read_only_fields = fields

    def get_agent_version(self, run: Run) -> int | None:
        return run.config.get("agent_version")

    def get_limits(self, run: Run) -> dict[str, Any]:
        return run.config.get("limits", {})

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_metadata(self, run: Run) -> dict[str, str]:
        """What the creator kept with the run (a batch input's or an OpenAI call's)."""
        return run.config.get("client", {}).get("metadata", {})

    def get_error(self, run: Run) -> dict[str, str] | None:
        if not run.error_code:
            return None
        return {"code": run.error_code, "message": run.error_message}

    def get_usage(self, run: Run) -> dict[str, Any]:
        return {
            "requests": run.requests,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "tool_calls": run.tool_calls,
            "cost_usd": money_str(run.cost_usd),
            "estimated": run.usage_estimated,
        }

    def get_links(self, run: Run) -> dict[str, str]:
        return {
            "self": f"/api/v1/runs/{run.id}/",
            "events": f"/api/v1/runs/{run.id}/events/",
            "cancel": f"/api/v1/runs/{run.id}/cancel/",
            "websocket": f"/ws/runs/{run.id}/",
        }


class EventsQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(
        min_value=0, max_value=MAX_OFFSET, default=0, help_text="Return events with seq > after."
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=1000, default=500, help_text="At most this many."
    )


class EventSerializer(serializers.Serializer):
    """The event envelope (DESIGN section 6), for the schema."""

    run = serializers.UUIDField()
    seq = serializers.IntegerField()
    type = serializers.CharField()
    at = serializers.CharField()
    # DRF's metaclass takes declared fields off the class: no clash with Serializer.data
    data = serializers.DictField()  # type: ignore[assignment]


class EventsPageSerializer(serializers.Serializer):
    run = serializers.UUIDField()
    status = serializers.CharField()
    events = EventSerializer(many=True)
    next_after = serializers.IntegerField()
    has_more = serializers.BooleanField()


class CancelResultSerializer(serializers.Serializer):
    run = serializers.UUIDField()
    status = serializers.CharField()
