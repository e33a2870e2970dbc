"""Serializer building blocks every app's API uses: strict about what it accepts."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import models
from rest_framework import serializers
from rest_framework.settings import api_settings


class StrictFieldsMixin:
    """Refuses fields it does not know, so a typo is a 400 instead of silently ignored.

    With ``refuse_read_only``, read-only fields count as unknown in a request too
    (sending ``version`` to a model serializer is a mistake, not a no-op).
    """

    refuse_read_only = False

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            fields = self.fields.items()  # type: ignore[attr-defined]
            known = {n for n, f in fields if not (self.refuse_read_only and f.read_only)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    """A serializer that refuses unknown fields."""


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean, and only that: DRF's BooleanField would take 0, 1, "yes" and "off"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 5 into "5"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, and only that: DRF's IntegerField would take "5", 5.0 and True."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def contains_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character anywhere (PostgreSQL's jsonb and text
    cannot store one: saving it is a DataError, not a validation error)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


class JSONValueField(serializers.JSONField):
    """Any JSON value the database can store: one holding a NUL character is a 400."""

    default_error_messages = {"null_characters": "Null characters are not allowed."}

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if contains_nul(value):
            self.fail("null_characters")
        return value


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A model serializer that refuses unknown and read-only fields, and takes booleans and
    strings only as JSON booleans and strings."""

    refuse_read_only = True
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.BooleanField: StrictBooleanField,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.JSONField: JSONValueField,
    }


MONEY_PLACES = 6
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)


def money_str(value: Decimal | int | str | None) -> str:
    """US dollars as a decimal string with fixed places: ``"0.000000"``, never ``"0E-8"``."""
    amount = Decimal(value or 0).quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)
    return f"{amount:f}"


class MoneyField(serializers.DecimalField):
    """A read-only amount in USD, rendered by ``money_str``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        super().__init__(
            max_digits=20, decimal_places=MONEY_PLACES, coerce_to_string=True, **kwargs
        )

    def to_representation(self, value: Any) -> str:
        return money_str(value)


def error_paths(detail: Any, path: str = "") -> dict[str, list[str]]:
    """A serializer's nested errors flattened to one message list per path, as a client
    addresses the value: ``{"inputs[3].thread": [...], "inputs[7].limits.timeout_s": [...]}``
    instead of a list of a thousand mostly empty objects. Errors of a list or object as a
    whole (DRF's ``non_field_errors``) are under its own path."""
    found: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a list's errors by index (DRF's ListField, ListSerializer)
                inner = f"{path}[{key}]"
            elif key == api_settings.NON_FIELD_ERRORS_KEY:
                inner = path
            else:
                inner = _join(path, str(key))
            for where, messages in error_paths(value, inner).items():
                found.setdefault(where, []).extend(messages)
    elif isinstance(detail, list) and all(isinstance(item, str) for item in detail):
        if detail:
            found[path or api_settings.NON_FIELD_ERRORS_KEY] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            for where, messages in error_paths(item, f"{path}[{index}]").items():
                found.setdefault(where, []).extend(messages)
    else:
        found[path or api_settings.NON_FIELD_ERRORS_KEY] = [str(detail)]
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
