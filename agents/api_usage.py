"""``GET /api/v1/usage/``: runs, requests, tokens, cost and durations per group."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.lifecycle import RunStatus
from agents.models import Agent
from agents.selectors import USAGE_GROUPS, USAGE_MAX_WINDOW, usage_summarize
from core.openapi import error_responses
from core.serializers import MoneyField, StrictSerializer

DEFAULT_WINDOW = timedelta(days=30)


class UsageQuerySerializer(StrictSerializer):
    group_by = serializers.CharField(required=False, default="agent")
    # "from" is a Python keyword: the field is declared below under its wire name.
    to = serializers.DateTimeField(required=False)
    agent = serializers.SlugField(required=False)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(required=False)
        return fields

    def validate_group_by(self, value: str) -> list[str]:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [n for n in names if n not in USAGE_GROUPS]
        if not names or unknown or len(set(names)) != len(names):
            raise serializers.ValidationError(
                f"A comma-separated list of distinct groups among: {', '.join(USAGE_GROUPS)}."
            )
        return names

    def validate_agent(self, value: str) -> Agent:
        agent = Agent.objects.filter(slug=value).first()
        if agent is None:
            raise serializers.ValidationError(f"No agent '{value}'.")
        return agent

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end: datetime = attrs.get("to") or timezone.now()
        start: datetime = attrs.get("from") or end - DEFAULT_WINDOW
        if start >= end:
            raise serializers.ValidationError({"from": "Must be before 'to'."})
        if end - start > USAGE_MAX_WINDOW:
            raise serializers.ValidationError(
                {"from": f"The window may span at most {USAGE_MAX_WINDOW.days} days."}
            )
        return {**attrs, "from": start, "to": end}


class RunCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        for status in RunStatus.values:
            fields[status] = serializers.IntegerField()
        return fields


class UsageGroupSerializer(serializers.Serializer):
    agent = serializers.CharField(required=False, help_text="With group_by=agent.")
    model = serializers.CharField(required=False, help_text="With group_by=model.")
    day = serializers.DateField(required=False, help_text="With group_by=day (UTC).")
    runs = RunCountsSerializer(help_text="Runs created in the window, by status.")
    model_requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cost_usd = MoneyField()
    duration_p50_s = serializers.FloatField(allow_null=True)
    duration_p95_s = serializers.FloatField(allow_null=True)

    def to_representation(self, instance: dict[str, Any]) -> dict[str, Any]:
        data = super().to_representation(instance)
        return {k: v for k, v in data.items() if k not in USAGE_GROUPS or k in instance}


class UsageSerializer(serializers.Serializer):
    group_by = serializers.ListField(child=serializers.CharField())
    to = serializers.DateTimeField()
    results = UsageGroupSerializer(many=True)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField()
        return fields


class UsageView(APIView):
    @extend_schema(
        summary="Usage per agent, model and/or day",
        description=(
            "Runs by status with their p50/p95 duration, model requests, input, output and "
            "cached tokens and cost in USD, per group, over `from <= t < to` (default: the "
            "last 30 days, at most 366). Your own runs; with `agents.view_run`, everyone's."
        ),
        parameters=[
            OpenApiParameter(
                "group_by",
                str,
                description="agent, model, day, or several comma-separated (agent,day).",
                enum=["agent", "model", "day", "agent,day", "model,day", "agent,model"],
            ),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start (inclusive)."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="End (exclusive)."),
            OpenApiParameter("agent", str, description="Only this agent (slug)."),
        ],
        responses={200: UsageSerializer, **error_responses(400, 401, 429)},
    )
    def get(self, request: Request) -> Response:
        query = UsageQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        results = usage_summarize(
            user=request.user,
            group_by=params["group_by"],
            start=params["from"],
            end=params["to"],
            agent=params.get("agent"),
        )
        body = {"group_by": params["group_by"], "from": params["from"], "to": params["to"]}
        return Response(UsageSerializer({**body, "results": results}).data)
