"""What the OpenAPI schema says about core's building blocks (a drf-spectacular extension)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from rest_framework import serializers

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


class BoundedListSerializerExtension(OpenApiSerializerFieldExtension):
    """A nested ``many=True`` serializer's ``min_length``/``max_length`` as ``minItems`` and
    ``maxItems`` (drf-spectacular leaves them out, so fuzzers sent 1,001 batch inputs as a
    valid request)."""

    target_class = serializers.ListSerializer
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._unwrap_list_serializer(self.target, direction)
        if self.target.min_length is not None:
            schema["minItems"] = self.target.min_length
        if self.target.max_length is not None:
            schema["maxItems"] = self.target.max_length
        return schema
