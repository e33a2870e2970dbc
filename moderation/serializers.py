from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.pagination import MAX_OFFSET
from core.serializers import (
    JSONValueField,
    StrictBooleanField,
    StrictCharField,
    StrictModelSerializer,
    StrictSerializer,
    contains_nul,
)
from moderation.engine import STAGES
from moderation.models import Flag, Policy, Rule, Severity, Stage
from moderation.selectors import AGE_CHOICES
from moderation.services import DECISIONS

CHECK_MAX_CHARS = 200_000


class FlagSerializer(serializers.ModelSerializer):
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    reviewer = serializers.SerializerMethodField()
    allow_listable = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Flag
        fields = [
            "id",
            "run",
            "agent",
            "rule",
            "rule_name",
            "stage",
            "kind",
            "action",
            "severity",
            "excerpt",
            "status",
            "reviewer",
            "reviewed_at",
            "note",
            "allow_listable",
            "created_at",
            "links",
        ]
        read_only_fields = fields

    def get_reviewer(self, flag: Flag) -> str | None:
        return flag.reviewer.get_username() if flag.reviewer else None

    def get_allow_listable(self, flag: Flag) -> bool:
        return bool(flag.allow_candidate) and flag.rule_id is not None

    def get_links(self, flag: Flag) -> dict[str, str]:
        return {
            "run": f"/api/v1/runs/{flag.run_id}/",
            "admin": f"/admin/agents/run/{flag.run_id}/change/",
            "resolve": f"/api/v1/moderation/flags/{flag.pk}/resolve/",
        }


class FlagQuerySerializer(StrictSerializer):
    agent = serializers.CharField(required=False)
    rule = serializers.IntegerField(required=False, min_value=1, max_value=MAX_OFFSET)
    run = serializers.UUIDField(required=False)
    kind = serializers.CharField(required=False, max_length=100)
    stage = serializers.ChoiceField(choices=Stage.choices, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    status = serializers.ChoiceField(choices=Flag.Status.choices, required=False)
    age = serializers.ChoiceField(choices=AGE_CHOICES, required=False)
    # Pagination parameters, read by the paginator.
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET)


class FlagResolveSerializer(StrictSerializer):
    decision = serializers.ChoiceField(choices=[str(d) for d in DECISIONS])
    note = StrictCharField(required=False, allow_blank=True, default="", max_length=2000)
    allow_list = StrictBooleanField(required=False, default=False)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_OFFSET},
            {"type": "string", "minLength": 1, "maxLength": 200},
        ]
    }
)
class PolicyRefField(serializers.Field):
    """A policy by id (a JSON number) or by name (a string)."""

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool) or not isinstance(data, int | str) or data == "":
            raise serializers.ValidationError("A policy id (number) or name (string).")
        if isinstance(data, int) and not 1 <= data <= MAX_OFFSET:
            raise serializers.ValidationError(f"A policy id from 1 to {MAX_OFFSET}.")
        if isinstance(data, str) and len(data) > 200:
            raise serializers.ValidationError("A policy name of at most 200 characters.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "array", "items": {"type": "object"}, "minItems": 1})
class RuleListField(JSONValueField):
    """Ad-hoc rules, a non-empty list of rule objects; the service checks them one by one."""


class CheckSerializer(StrictSerializer):
    text = StrictCharField(allow_blank=True, trim_whitespace=False, max_length=CHECK_MAX_CHARS)
    stage = serializers.ChoiceField(choices=Stage.choices)
    policy = PolicyRefField(required=False)
    # Shape and parameters are checked rule by rule by the service, with engine messages.
    rules = RuleListField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("policy" in attrs) == ("rules" in attrs):
            raise serializers.ValidationError("Give exactly one of 'policy' or 'rules'.")
        return attrs


class FindingSerializer(serializers.Serializer):
    """A finding as the check endpoint returns it (for the schema)."""

    rule = serializers.CharField()
    rule_id = serializers.CharField()
    kind = serializers.CharField()
    action = serializers.CharField()
    severity = serializers.CharField()
    stage = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    excerpt = serializers.CharField()


class CheckResultSerializer(serializers.Serializer):
    findings = FindingSerializer(many=True)
    text = serializers.CharField()
    blocked = FindingSerializer(allow_null=True)
    skipped = serializers.ListField(child=serializers.CharField())


@extend_schema_field(
    {
        "type": "array",
        # The stages enum every stage field shares (ENUM_NAME_OVERRIDES in settings).
        "items": {"$ref": "#/components/schemas/StageEnum"},
        "minItems": 1,
        "uniqueItems": True,
    }
)
class StageListField(serializers.ListField):
    """Stages as the schema documents them; the engine validates them, with its message."""


class RuleSerializer(StrictModelSerializer):
    """One rule of a policy; ``params`` are checked by the engine, with its messages."""

    # The engine validates params and stages (Rule.clean); here only their JSON types.
    params = serializers.DictField(required=False, default=dict)

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if contains_nul(params):
            raise serializers.ValidationError("Null characters are not allowed.")
        return params

    stages = StageListField(child=serializers.CharField(), required=False, default=sorted(STAGES))

    class Meta:
        model = Rule
        fields = ["name", "kind", "params", "stages", "action", "severity", "is_active"]
        # Uniqueness within the policy is the service's to check (rules are one list).
        validators: list[Any] = []


class PolicySerializer(StrictModelSerializer):
    rules = RuleSerializer(many=True, required=False, help_text="In the order they run.")
    links = serializers.SerializerMethodField()

    class Meta:
        model = Policy
        fields = ["name", "description", "fail_mode", "rules", "created_at", "updated_at", "links"]
        read_only_fields = ["created_at", "updated_at", "links"]

    def to_representation(self, policy: Policy) -> dict[str, Any]:
        data = super().to_representation(policy)
        data["rules"] = RuleSerializer(policy.rules.order_by("order", "id"), many=True).data
        return data

    def get_links(self, policy: Policy) -> dict[str, str]:
        return {"self": f"/api/v1/moderation/policies/{policy.name}/"}
