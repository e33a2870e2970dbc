"""The caller's own API tokens: list, create (the secret is shown once), revoke."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import ApiToken
from agents.token_services import api_token_delete, api_token_issue
from core.errors import NotFoundError
from core.openapi import error_responses
from core.serializers import StrictCharField, StrictSerializer


class TokenCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=100, help_text="What the token is for, e.g. 'CI deploy'.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When it stops working; absent: never."
    )


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField(source="token.created")
    expires_at = serializers.DateTimeField(source="token.expiry", allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    current = serializers.SerializerMethodField(help_text="The token of this request.")

    def get_current(self, token: ApiToken) -> bool:
        auth = self.context.get("auth")
        return getattr(auth, "digest", None) == token.token_id


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The secret: shown this once, never again.")


def _own_tokens(user: Any) -> Any:
    return (
        ApiToken.objects.filter(token__user=user)
        .select_related("token")
        .order_by("-token__created")
    )


class TokenListView(APIView):
    @extend_schema(
        summary="List your API tokens",
        description="Your tokens, newest first, without their secrets.",
        responses={200: TokenSerializer(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        tokens = _own_tokens(request.user)
        return Response(TokenSerializer(tokens, many=True, context={"auth": request.auth}).data)

    @extend_schema(
        summary="Create an API token",
        description=(
            "A new bearer token for yourself, with a name and an optional expiry. The secret "
            "is in this response only: store it now."
        ),
        request=TokenCreateSerializer,
        responses={201: TokenCreatedSerializer, **error_responses(400, 401)},
    )
    def post(self, request: Request) -> Response:
        body = TokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, secret = api_token_issue(
            user=request.user,
            name=body.validated_data["name"],
            expires_at=body.validated_data.get("expires_at"),
        )
        data = TokenSerializer(token, context={"auth": request.auth}).data
        return Response({**data, "token": secret}, status=status.HTTP_201_CREATED)


class TokenDetailView(APIView):
    @extend_schema(
        summary="Revoke one of your API tokens",
        description="The token stops working at once (also the one of this request).",
        parameters=[OpenApiParameter("token_id", int, OpenApiParameter.PATH)],
        responses={204: None, **error_responses(401, 404)},
    )
    def delete(self, request: Request, token_id: int) -> Response:
        token = _own_tokens(request.user).filter(pk=token_id).first()
        if token is None:
            raise NotFoundError("not_found", "No such token.")
        api_token_delete(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
