"""REST API for moderation: the triage queue, resolving flags, dry-run checks.

Authorized by Django model permissions on flags, rules and policies, never by staff status.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.openapi import error_responses
from core.pagination import BoundedLimitOffsetPagination
from core.permissions import ModelPermission, has_perms
from moderation.models import Flag, Policy
from moderation.policy_services import policy_delete, policy_save
from moderation.selectors import flag_list
from moderation.serializers import (
    CheckResultSerializer,
    CheckSerializer,
    FlagQuerySerializer,
    FlagResolveSerializer,
    FlagSerializer,
    PolicySerializer,
)
from moderation.services import flag_resolve, policy_check


class FlagListView(ListAPIView):
    permission_classes = [ModelPermission]
    required_perms = {"GET": ["moderation.view_flag"]}
    serializer_class = FlagSerializer

    @extend_schema(
        summary="List moderation flags",
        description="The triage queue: open flags first, newest first, filtered by agent, "
        "rule, run, kind, stage, severity, status and age; bad values are a 400 naming "
        "the parameter.",
        parameters=[FlagQuerySerializer],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        query = FlagQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        filters.pop("limit", None)
        filters.pop("offset", None)
        return flag_list(**filters)


class FlagResolveView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {"POST": ["moderation.view_flag", "moderation.change_flag"]}

    @extend_schema(
        summary="Resolve a moderation flag",
        description="Records the decision and a note. With allow_list, the flagged value is "
        "added to the matching rule's allow list, which also takes moderation.change_rule.",
        request=FlagResolveSerializer,
        responses=FlagSerializer,
    )
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

    @extend_schema(
        summary="Dry-run a moderation check",
        description="Runs a stored policy (`policy`, by name) or inline `rules` on a text at "
        "one stage and returns the findings and the verdict; nothing is stored or flagged. "
        "An unknown policy is a 404.",
        request=CheckSerializer,
        responses={200: CheckResultSerializer, **error_responses(404)},
    )
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


def _policy(name: str) -> Policy:
    policy = Policy.objects.filter(name=name).first()
    if policy is None:
        raise NotFoundError("policy_not_found", f"No policy '{name}'.")
    return policy


def _save(policy: Policy, body: PolicySerializer) -> Policy:
    data = dict(body.validated_data)
    rules = data.pop("rules", None)
    return policy_save(
        policy=policy, data=data, rules=[dict(r) for r in rules] if rules is not None else None
    )


class PolicyListView(APIView):
    # Read by the schema: these pages are documented as limit/offset pages.
    pagination_class = BoundedLimitOffsetPagination

    permission_classes = [ModelPermission]
    required_perms = {"GET": ["moderation.view_policy"], "POST": ["moderation.add_policy"]}

    @extend_schema(
        summary="List moderation policies",
        description="Every policy with its ordered rules, paged.",
        responses=PolicySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        paginator = BoundedLimitOffsetPagination()
        qs = Policy.objects.prefetch_related("rules").order_by("name")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(PolicySerializer(page, many=True).data)

    @extend_schema(
        summary="Create a moderation policy",
        description="With its ordered rules; each rule's params are validated by the engine.",
        request=PolicySerializer,
        responses={201: PolicySerializer},
    )
    def post(self, request: Request) -> Response:
        body = PolicySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        policy = _save(Policy(), body)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {
        "GET": ["moderation.view_policy"],
        "PATCH": ["moderation.change_policy"],
        "DELETE": ["moderation.delete_policy"],
    }

    @extend_schema(
        summary="Read a moderation policy",
        description="The policy, its fail mode and its rules in the order they run.",
        responses=PolicySerializer,
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(PolicySerializer(_policy(name)).data)

    @extend_schema(
        summary="Change a moderation policy",
        description="``rules``, when given, replaces the whole ordered list (rules are "
        "matched by name, so kept rules keep their flags).",
        request=PolicySerializer,
        responses=PolicySerializer,
    )
    def patch(self, request: Request, name: str) -> Response:
        policy = _policy(name)
        body = PolicySerializer(policy, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        return Response(PolicySerializer(_save(policy, body)).data)

    @extend_schema(
        summary="Delete a moderation policy",
        description="A policy that agents use is a 409 policy_in_use naming them.",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(409)},
    )
    def delete(self, request: Request, name: str) -> Response:
        policy_delete(policy=_policy(name))
        return Response(status=status.HTTP_204_NO_CONTENT)
