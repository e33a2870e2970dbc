"""What the OpenAPI schema says about core's building blocks (a drf-spectacular extension)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension

from core.serializers import StrictFieldsMixin


class StrictSerializerExtension(OpenApiSerializerExtension):
    """Strict serializers refuse unknown fields, so their schemas say
    ``additionalProperties: false`` (schemathesis sent extra fields the schema allowed).
    True of their output too: it holds exactly their fields."""

    target_class = StrictFieldsMixin
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        return schema
