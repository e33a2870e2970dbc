"""REST API for providers (thin views over agents.provider_services).

Every operation needs a model permission: ``agents.view_provider`` to read,
``add_provider`` / ``change_provider`` / ``delete_provider`` to write, and
``change_provider`` for the connection check (it uses the key).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Provider
from agents.provider_services import provider_check, provider_delete, provider_save
from agents.serializers import ProviderCheckSerializer, ProviderSerializer
from core.errors import NotFoundError
from core.openapi import error_responses
from core.pagination import BoundedLimitOffsetPagination
from core.permissions import ModelPermission


def _provider(name: str) -> Provider:
    provider = Provider.objects.select_related("api_key").filter(name=name).first()
    if provider is None:
        raise NotFoundError("provider_not_found", f"No provider '{name}'.")
    return provider


class ProviderListView(APIView):
    # Read by the schema: these pages are documented as limit/offset pages.
    pagination_class = BoundedLimitOffsetPagination

    permission_classes = [ModelPermission]
    required_perms = {"GET": ["agents.view_provider"], "POST": ["agents.add_provider"]}

    @extend_schema(
        summary="List providers",
        description="Every provider by name, paged; the key only as its vault secret's name.",
        responses=ProviderSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        paginator = BoundedLimitOffsetPagination()
        qs = Provider.objects.select_related("api_key").order_by("name")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ProviderSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a provider",
        description="Where agents' models run: kind openai (any OpenAI-compatible endpoint), "
        "anthropic or demo. The key is `api_key_secret`, the name of a vault secret, never "
        "a value; an unknown secret is a 400 naming it.",
        request=ProviderSerializer,
        responses={201: ProviderSerializer},
    )
    def post(self, request: Request) -> Response:
        body = ProviderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        provider = provider_save(provider=Provider(), data=dict(body.validated_data))
        return Response(ProviderSerializer(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {
        "GET": ["agents.view_provider"],
        "PATCH": ["agents.change_provider"],
        "DELETE": ["agents.delete_provider"],
    }

    @extend_schema(
        summary="Read a provider",
        description="Its settings and the name of its key's secret; never the key.",
        responses=ProviderSerializer,
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(ProviderSerializer(_provider(name)).data)

    @extend_schema(
        summary="Change a provider",
        description='Changes the given fields; `"api_key_secret": null` removes the key.',
        request=ProviderSerializer,
        responses=ProviderSerializer,
    )
    def patch(self, request: Request, name: str) -> Response:
        provider = _provider(name)
        body = ProviderSerializer(provider, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        provider = provider_save(provider=provider, data=dict(body.validated_data))
        return Response(ProviderSerializer(provider).data)

    @extend_schema(
        summary="Delete a provider",
        description="A provider that agents use is a 409 provider_in_use naming them.",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(409)},
    )
    def delete(self, request: Request, name: str) -> Response:
        provider_delete(provider=_provider(name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProviderCheckView(APIView):
    permission_classes = [ModelPermission]
    required_perms = {"POST": ["agents.change_provider"]}

    @extend_schema(
        summary="Check a provider's connection",
        description="One cheap authenticated request (GET {base_url}/models) through the "
        "SSRF-safe client; ok with the latency, or the provider's error. Never the key.",
        request=None,
        responses=ProviderCheckSerializer,
    )
    def post(self, request: Request, name: str) -> Response:
        return Response(provider_check(provider=_provider(name), actor=request.user))
