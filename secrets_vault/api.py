"""REST API for secrets, behind the model permissions on ``secrets_vault.Secret``.

Thin views: validate, call a service or selector.

The value is write-only: requests may carry it, responses never do. The views render
JSON only (no browsable API), so no HTML form can echo a submitted value back.
"""

from __future__ import annotations

from typing import Any

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_responses
from core.pagination import BoundedLimitOffsetPagination
from core.permissions import ModelPermission
from secrets_vault import selectors, services
from secrets_vault.errors import SecretNotFoundError
from secrets_vault.models import Secret
from secrets_vault.serializers import (
    SecretCreateSerializer,
    SecretDetailSerializer,
    SecretRotateSerializer,
    SecretSerializer,
    SecretUpdateSerializer,
    SecretVersionSerializer,
)

VIEW = ["secrets_vault.view_secret"]
CHANGE = ["secrets_vault.view_secret", "secrets_vault.change_secret"]


class VaultView(APIView):
    """Reading needs ``view_secret``; every write also the permission the admin asks for
    the same action (rotating, disabling or destroying a version changes the secret)."""

    permission_classes = [ModelPermission]
    renderer_classes = [JSONRenderer]
    required_perms: dict[str, list[str]] = {"GET": VIEW, "*": CHANGE}

    def secret_or_404(self, name: str) -> Secret:
        secret = selectors.secret_get(name)
        if secret is None:
            raise SecretNotFoundError(name)
        return secret


class SecretListView(VaultView):
    required_perms = {"GET": VIEW, "POST": [*VIEW, "secrets_vault.add_secret"]}

    # Read by drf-spectacular too, so the schema documents the page, not a bare array.
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        summary="List secrets",
        description="Names and metadata of every secret, paged; never a value.",
        responses={200: SecretSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.secret_list(), request, view=self)
        return paginator.get_paginated_response(SecretSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a secret",
        description="Stores the value encrypted as version 1; the answer never holds it. "
        "A name in use is a 409 secret_exists.",
        request=SecretCreateSerializer,
        responses={201: SecretDetailSerializer, **error_responses(409)},
    )
    @method_decorator(sensitive_variables("body"))
    def post(self, request: Request) -> Response:
        body = SecretCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        secret = services.secret_create(**body.validated_data, actor=request.user)
        return Response(
            SecretDetailSerializer(self.secret_or_404(secret.name)).data,
            status=status.HTTP_201_CREATED,
        )


class SecretDetailView(VaultView):
    required_perms = {
        "GET": VIEW,
        "PATCH": CHANGE,
        "DELETE": [*VIEW, "secrets_vault.delete_secret"],
    }

    @extend_schema(
        summary="Read a secret",
        description="Its metadata and versions (state, hint when shown); never the value.",
        responses={200: SecretDetailSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(SecretDetailSerializer(self.secret_or_404(name)).data)

    @extend_schema(
        summary="Change a secret's metadata",
        description="Description, hint display, rotation interval and the agents that may "
        "reveal it; a new value is a new version (POST .../versions/).",
        request=SecretUpdateSerializer,
        responses={200: SecretDetailSerializer},
    )
    def patch(self, request: Request, name: str) -> Response:
        secret = self.secret_or_404(name)
        body = SecretUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.secret_update(secret=secret, **body.validated_data, actor=request.user)
        return Response(SecretDetailSerializer(self.secret_or_404(name)).data)

    @extend_schema(
        summary="Delete a secret",
        description="Deletes every version. A secret a provider still uses is a 409 "
        "secret_in_use naming the providers.",
        responses={204: None, **error_responses(409)},
    )
    def delete(self, request: Request, name: str) -> Response:
        services.secret_delete(secret=self.secret_or_404(name), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretVersionListView(VaultView):
    @extend_schema(
        summary="List a secret's versions",
        description="Every version, newest first, with its state; never a value.",
        responses={200: SecretVersionSerializer(many=True)},
    )
    def get(self, request: Request, name: str) -> Response:
        secret = self.secret_or_404(name)
        versions = selectors.secret_version_list(secret)
        return Response(SecretVersionSerializer(versions, many=True).data)

    @extend_schema(
        summary="Rotate a secret",
        description="A new value becomes the current version. With expected_version, a "
        "secret that moved on meanwhile is a 409 version_conflict.",
        request=SecretRotateSerializer,
        responses={201: SecretVersionSerializer, **error_responses(409)},
    )
    @method_decorator(sensitive_variables("body"))
    def post(self, request: Request, name: str) -> Response:
        secret = self.secret_or_404(name)
        body = SecretRotateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = services.secret_rotate(
            secret=secret,
            value=body.validated_data["value"],
            expected_version=body.validated_data.get("expected_version"),
            actor=request.user,
        )
        return Response(
            SecretVersionSerializer(selectors.secret_version_get(secret, version.version)).data,
            status=status.HTTP_201_CREATED,
        )


class SecretVersionDetailView(VaultView):
    @extend_schema(
        summary="Read one version of a secret",
        description="Its state, hint and key id; never the value.",
        responses={200: SecretVersionSerializer},
    )
    def get(self, request: Request, name: str, version: int) -> Response:
        secret = self.secret_or_404(name)
        row = selectors.secret_version_get(secret, version)
        if row is None:
            raise SecretNotFoundError(name, version)
        return Response(SecretVersionSerializer(row).data)


class SecretVersionActionView(VaultView):
    service: Any = None

    @extend_schema(request=None, responses={200: SecretVersionSerializer, **error_responses(409)})
    def post(self, request: Request, name: str, version: int) -> Response:
        secret = self.secret_or_404(name)
        self.service(secret=secret, version=version, actor=request.user)
        return Response(SecretVersionSerializer(selectors.secret_version_get(secret, version)).data)


@extend_schema_view(
    post=extend_schema(
        summary="Disable a version of a secret",
        description="Makes a version unusable until it is enabled again (idempotent); "
        "a destroyed version is a 409.",
    )
)
class SecretVersionDisableView(SecretVersionActionView):
    service = staticmethod(services.secret_version_disable)


@extend_schema_view(
    post=extend_schema(
        summary="Enable a version of a secret",
        description="Makes a disabled version usable again (idempotent); "
        "a destroyed one cannot come back (409).",
    )
)
class SecretVersionEnableView(SecretVersionActionView):
    service = staticmethod(services.secret_version_enable)


@extend_schema_view(
    post=extend_schema(
        summary="Destroy a version of a secret",
        description="Erases the version's ciphertext and wrapped data key for good (idempotent).",
    )
)
class SecretVersionDestroyView(SecretVersionActionView):
    service = staticmethod(services.secret_version_destroy)
