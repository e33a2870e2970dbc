"""REST API for moderation: the triage queue, resolving flags, dry-run checks.

Authorized by Django model permissions on flags, rules and policies, never by staff status.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.permissions import ModelPermission, has_perms
from moderation.models import Flag, Policy
from moderation.selectors import flags_filtered
from moderation.serializers import (
    CheckResultSerializer,
    CheckSerializer,
    FlagQuerySerializer,
    FlagResolveSerializer,
    FlagSerializer,
)
from moderation.services import flag_resolve, policy_check


class FlagListView(ListAPIView):
    permission_classes = [ModelPermission]
    required_perms = {"GET": ["moderation.view_flag"]}
    serializer_class = FlagSerializer

    @extend_schema(parameters=[FlagQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        query = FlagQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        filters.pop("limit", None)
        filters.pop("offset", None)
        return flags_filtered(**filters)


class FlagResolveView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {"POST": ["moderation.view_flag", "moderation.change_flag"]}

    @extend_schema(request=FlagResolveSerializer, responses=FlagSerializer)
    def post(self, request: Request, flag_id: int) -> Response:
        flag = Flag.objects.filter(pk=flag_id).first()
        if flag is None:
            raise NotFoundError("not_found", "No such flag.")
        body = FlagResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if body.validated_data["allow_list"] and not has_perms(
            request.user, "moderation.change_rule"
        ):
            # Allow-listing edits the rule that matched, which is more than triage.
            raise PermissionDenied("Allow-listing a value needs moderation.change_rule.")
        flag = flag_resolve(
            flag=flag,
            decision=body.validated_data["decision"],
            note=body.validated_data["note"],
            reviewer=request.user,
            allow_list_entry=body.validated_data["allow_list"],
        )
        return Response(FlagSerializer(flag).data)


class CheckView(APIView):
    """A dry run of a policy: reading the policy is all it takes (nothing is stored)."""

    permission_classes = [ModelPermission]
    required_perms = {"POST": ["moderation.view_policy"]}

    @extend_schema(request=CheckSerializer, responses=CheckResultSerializer)
    def post(self, request: Request) -> Response:
        body = CheckSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        policy = None
        if "policy" in data:
            policy = _policy_by_ref(data["policy"])
        result = policy_check(
            text=data["text"], stage=data["stage"], policy=policy, rules=data.get("rules")
        )
        return Response(result)


def _policy_by_ref(ref: int | str) -> Policy:
    lookup = {"pk": ref} if isinstance(ref, int) else {"name": ref}
    policy = Policy.objects.filter(**lookup).first()
    if policy is None:
        raise NotFoundError("policy_not_found", f"No policy {ref!r}.")
    return policy
