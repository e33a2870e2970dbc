"""REST API for defining agents and their versions (thin views over agents.agent_services).

Writes need the model permissions ``agents.add_agent`` / ``change_agent`` /
``delete_agent``; anyone who may run agents reads the active ones (name, model, tools),
and holders of ``agents.view_agent`` or ``change_agent`` read the whole configuration.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.agent_services import agent_create, agent_delete, agent_update, agent_version_restore
from agents.models import Agent
from agents.selectors import agent_list, agent_may_configure, agent_version_list
from agents.serializers import (
    AgentConfigSerializer,
    AgentDeletedSerializer,
    AgentSerializer,
    AgentVersionSerializer,
)
from core.errors import NotFoundError
from core.pagination import BoundedLimitOffsetPagination
from core.permissions import ModelPermission

VERSION_READ_PERMS = ["agents.view_agent"]


def _agent(request: Request, slug: str) -> Agent:
    agent = agent_list(request.user).filter(slug=slug).first()
    if agent is None:
        raise NotFoundError("agent_not_found", f"No agent '{slug}'.")
    return agent


def _agent_view(*, many: bool = False) -> PolymorphicProxySerializer:
    """The schema of an agent as read: the whole configuration for those who may configure
    agents, the public fields for everyone else (both closed, so exactly one matches)."""
    return PolymorphicProxySerializer(
        component_name="AgentView",
        serializers=[AgentConfigSerializer, AgentSerializer],
        resource_type_field_name=None,
        many=many,
    )


def _agent_data(request: Request, agent: Agent) -> dict[str, Any]:
    if agent_may_configure(request.user):
        return AgentConfigSerializer(agent).data
    return AgentSerializer(agent).data


class AgentListView(APIView):
    # Read by the schema: these pages are documented as limit/offset pages.
    pagination_class = BoundedLimitOffsetPagination

    permission_classes = [ModelPermission]
    required_perms = {"POST": ["agents.add_agent"]}

    @extend_schema(
        summary="List agents",
        description="Active agents for everyone who may run them; with agents.view_agent "
        "or agents.change_agent every agent with its whole configuration.",
        responses=_agent_view(many=True),
    )
    def get(self, request: Request) -> Response:
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(agent_list(request.user), request, view=self)
        serializer = AgentConfigSerializer if agent_may_configure(request.user) else AgentSerializer
        return paginator.get_paginated_response(serializer(page, many=True).data)

    @extend_schema(
        summary="Create an agent",
        description="Every field an operator sets in the admin, validated as the admin "
        "does; the answer is the agent at version 1. A slug in use is a 400 naming it.",
        request=AgentConfigSerializer,
        responses={201: AgentConfigSerializer},
    )
    def post(self, request: Request) -> Response:
        body = AgentConfigSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = agent_create(data=dict(body.validated_data), actor=request.user)
        return Response(AgentConfigSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {"PATCH": ["agents.change_agent"], "DELETE": ["agents.delete_agent"]}

    @extend_schema(
        summary="Read an agent",
        description="The whole configuration for holders of agents.view_agent or "
        "agents.change_agent; the public fields for anyone else who may run it.",
        responses=_agent_view(),
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(_agent_data(request, _agent(request, slug)))

    @extend_schema(
        summary="Change an agent",
        description="A change to how the agent runs stores a new version.",
        request=AgentConfigSerializer,
        responses=AgentConfigSerializer,
    )
    def patch(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        body = AgentConfigSerializer(agent, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        agent = agent_update(agent=agent, data=dict(body.validated_data), actor=request.user)
        return Response(AgentConfigSerializer(agent).data)

    @extend_schema(
        summary="Delete an agent",
        description="An agent that has runs is deactivated instead (200, is_active false), "
        "so its history stays; one without runs is deleted (204).",
        responses={
            204: OpenApiResponse(description="Deleted."),
            200: AgentDeletedSerializer,
        },
    )
    def delete(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        if agent_delete(agent=agent):
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            {
                "slug": agent.slug,
                "is_active": False,
                "detail": "The agent has runs, so it was deactivated instead of deleted.",
            }
        )


class AgentVersionListView(APIView):
    # Read by the schema: these pages are documented as limit/offset pages.
    pagination_class = BoundedLimitOffsetPagination

    permission_classes = [ModelPermission]
    required_perms = {"GET": VERSION_READ_PERMS}

    @extend_schema(
        summary="List an agent's versions",
        description="Newest first; each is an immutable snapshot of how the agent ran.",
        responses=AgentVersionSerializer(many=True),
    )
    def get(self, request: Request, slug: str) -> Response:
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(
            agent_version_list(_agent(request, slug)), request, view=self
        )
        return paginator.get_paginated_response(AgentVersionSerializer(page, many=True).data)


class AgentVersionDetailView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {"GET": VERSION_READ_PERMS}

    @extend_schema(
        summary="Read one version of an agent",
        description="The immutable snapshot: number, config, note, who made it and when.",
        responses=AgentVersionSerializer,
    )
    def get(self, request: Request, slug: str, number: int) -> Response:
        version = agent_version_list(_agent(request, slug)).filter(number=number).first()
        if version is None:
            raise NotFoundError("version_not_found", f"Agent '{slug}' has no version {number}.")
        return Response(AgentVersionSerializer(version).data)


class AgentVersionRestoreView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {"POST": ["agents.change_agent"]}

    @extend_schema(
        summary="Restore a version",
        description="Stores a new version equal to version n; the next run uses it.",
        request=None,
        responses={201: AgentVersionSerializer},
    )
    def post(self, request: Request, slug: str, number: int) -> Response:
        version = agent_version_restore(
            agent=_agent(request, slug), number=number, actor=request.user
        )
        return Response(AgentVersionSerializer(version).data, status=status.HTTP_201_CREATED)
