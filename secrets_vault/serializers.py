"""DRF serializers. ``value`` is write-only everywhere: no response ever contains it."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.relations import MANY_RELATION_KWARGS

from core.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
)
from secrets_vault.crypto import SecretValue
from secrets_vault.models import Secret, SecretVersion, name_validator
from secrets_vault.services import MAX_VALUE_CHARS


class SecretValueField(serializers.CharField):
    """Accepts a string and hands the service a ``SecretValue``; never renders anything."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("write_only", True)
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("max_length", MAX_VALUE_CHARS)
        kwargs.setdefault("style", {"input_type": "password"})
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            # CharField would accept numbers; a secret value is text, and the message must
            # not echo the input.
            raise serializers.ValidationError("A string is required.")
        return super().to_internal_value(data)

    def run_validation(self, data: Any = serializers.empty) -> SecretValue:
        # Wrapped only after the length and blank validators saw the plain string.
        return SecretValue(super().run_validation(data))

    def to_representation(self, value: Any) -> Any:
        raise AssertionError("SecretValueField is write-only")


class ValueCarryingSerializer(StrictSerializer):
    """A serializer whose input holds a value: its repr (DRF's shows the input data, and
    error pages print locals) names the class only."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class AgentSlugListField(serializers.ManyRelatedField):
    """A JSON array of slugs, and only that: DRF's would iterate an object's keys."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class AgentSlugField(serializers.SlugRelatedField):
    """An agent named by its slug. The queryset comes from ``Secret.agents``'s model, so
    the vault does not import the agents app (imports point down)."""

    def __init__(self, **kwargs: Any) -> None:
        agent_model = Secret._meta.get_field("agents").related_model
        super().__init__(slug_field="slug", queryset=agent_model._default_manager.all(), **kwargs)

    @classmethod
    def many_init(cls, *args: Any, **kwargs: Any) -> AgentSlugListField:
        many = {k: v for k, v in kwargs.items() if k in MANY_RELATION_KWARGS}
        return AgentSlugListField(child_relation=cls(*args, **kwargs), **many)


class SecretCreateSerializer(ValueCarryingSerializer):
    name = StrictCharField(max_length=128, validators=[name_validator])
    value = SecretValueField()
    description = StrictCharField(required=False, allow_blank=True, default="")
    agents = AgentSlugField(many=True, required=False, default=list)
    rotation_interval_days = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=36_500, default=None
    )
    show_hint = StrictBooleanField(required=False, default=True)


class SecretUpdateSerializer(StrictSerializer):
    description = StrictCharField(required=False, allow_blank=True)
    agents = AgentSlugField(many=True, required=False)
    rotation_interval_days = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=36_500
    )
    show_hint = StrictBooleanField(required=False)


class SecretRotateSerializer(ValueCarryingSerializer):
    value = SecretValueField()
    expected_version = StrictIntegerField(required=False, allow_null=True, min_value=0)


class SecretVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()
    hint = serializers.CharField(source="masked_hint")

    class Meta:
        model = SecretVersion
        fields = [
            "version",
            "state",
            "hint",
            "kek_id",
            "algorithm",
            "format_version",
            "created_by",
            "created_at",
            "disabled_at",
            "destroyed_at",
        ]
        read_only_fields = fields

    def get_created_by(self, version: SecretVersion) -> str | None:
        return version.created_by.get_username() if version.created_by else None


class SecretSerializer(serializers.ModelSerializer):
    agents = serializers.SerializerMethodField()
    rotation_due = serializers.BooleanField(read_only=True)
    rotation_due_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_accessed_at = serializers.DateTimeField(read_only=True, allow_null=True, default=None)
    links = serializers.SerializerMethodField()

    class Meta:
        model = Secret
        fields = [
            "id",
            "name",
            "description",
            "agents",
            "current_version",
            "show_hint",
            "rotation_interval_days",
            "rotation_due",
            "rotation_due_at",
            "last_rotated_at",
            "last_accessed_at",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields

    def get_agents(self, secret: Secret) -> list[str]:
        return sorted(a.slug for a in secret.agents.all())

    def get_links(self, secret: Secret) -> dict[str, str]:
        return {
            "self": f"/api/v1/secrets/{secret.name}/",
            "versions": f"/api/v1/secrets/{secret.name}/versions/",
        }


class SecretDetailSerializer(SecretSerializer):
    versions = serializers.SerializerMethodField()

    class Meta(SecretSerializer.Meta):
        fields = [*SecretSerializer.Meta.fields, "versions"]
        read_only_fields = fields

    def get_versions(self, secret: Secret) -> list[dict[str, Any]]:
        from secrets_vault.selectors import secret_version_list

        # many=True gives a ReturnList, which the stubs type as a ReturnDict.
        return list(SecretVersionSerializer(secret_version_list(secret), many=True).data)
