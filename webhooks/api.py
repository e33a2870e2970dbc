"""REST API for webhook endpoints and their delivery log. Thin views over the services.

Anyone signed in manages their own endpoints (they receive events of their own runs);
``webhooks.view_webhookendpoint`` shows everyone's, and their owners' permissions decide
which events reach them (docs/webhooks.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.selectors import agent_list
from core.errors import ForbiddenError, NotFoundError
from core.pagination import BoundedLimitOffsetPagination
from core.permissions import has_perms
from webhooks import endpoint_services, selectors, services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.serializers import (
    DeliverySerializer,
    EndpointCreateSerializer,
    EndpointSerializer,
    EndpointUpdateSerializer,
    EndpointWithSecretSerializer,
)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, DjangoValidationError):
        return None


def _agent(user: Any, slug: str | None) -> Any:
    if slug is None:
        return None
    agent = agent_list(user).filter(slug=slug).first()
    if agent is None:
        # A name in a body that matches nothing is a 400 naming the field, as for every
        # other reference in a body (a provider, a policy, a secret), not a 404 of the URL.
        raise serializers.ValidationError({"agent": [f"No agent '{slug}'."]})
    return agent


class EndpointView(APIView):
    def endpoint_or_404(self, request: Request, endpoint_id: str) -> WebhookEndpoint:
        pk = _uuid(endpoint_id)
        endpoint = selectors.endpoint_get(request.user, pk) if pk else None
        if endpoint is None:
            raise NotFoundError("not_found", "No such webhook endpoint.")
        return endpoint

    def require_owner_or(self, request: Request, endpoint: WebhookEndpoint, perm: str) -> None:
        """Seeing another owner's endpoint does not mean changing it."""
        if endpoint.owner_id != request.user.pk and not has_perms(request.user, perm):
            raise ForbiddenError("permission_denied", "You may not change this endpoint.")


class EndpointListView(EndpointView):
    # Read by the schema: these pages are documented as limit/offset pages.
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        summary="List webhook endpoints",
        description="Your endpoints (everyone's with webhooks.view_webhookendpoint), paged.",
        responses={200: EndpointSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.endpoint_list(request.user), request, view=self
        )
        return paginator.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a webhook endpoint",
        description="Returns the signing secret once, as `secret` (whsec_...).",
        request=EndpointCreateSerializer,
        responses={201: EndpointWithSecretSerializer},
    )
    def post(self, request: Request) -> Response:
        body = EndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        endpoint, secret = endpoint_services.endpoint_create(
            owner=request.user,
            url=data["url"],
            events=data["events"],
            agent=_agent(request.user, data.get("agent")),
            description=data.get("description", ""),
        )
        out = EndpointWithSecretSerializer(endpoint, context={"secret": secret})
        return Response(out.data, status=status.HTTP_201_CREATED)


class EndpointDetailView(EndpointView):
    @extend_schema(
        summary="Get a webhook endpoint",
        description="Its URL, events, agent filter and state; the signing secret is shown "
        "only at creation and rotation.",
        responses={200: EndpointSerializer},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(EndpointSerializer(self.endpoint_or_404(request, endpoint_id)).data)

    @extend_schema(
        summary="Change a webhook endpoint",
        description="Setting is_active to true re-enables a disabled endpoint.",
        request=EndpointUpdateSerializer,
        responses={200: EndpointSerializer},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self.endpoint_or_404(request, endpoint_id)
        self.require_owner_or(request, endpoint, "webhooks.change_webhookendpoint")
        body = EndpointUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changes = dict(body.validated_data)
        if "agent" in changes:
            changes["agent"] = _agent(request.user, changes["agent"])
        endpoint = endpoint_services.endpoint_update(endpoint=endpoint, **changes)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Delete a webhook endpoint",
        description="No more deliveries are made to it; the owner, or "
        "webhooks.delete_webhookendpoint.",
        responses={204: None},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self.endpoint_or_404(request, endpoint_id)
        self.require_owner_or(request, endpoint, "webhooks.delete_webhookendpoint")
        endpoint_services.endpoint_delete(endpoint=endpoint, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretView(EndpointView):
    @extend_schema(
        summary="Rotate an endpoint's signing secret",
        description="Returns the new secret once; the old one keeps signing during the overlap.",
        request=None,
        responses={200: EndpointWithSecretSerializer},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self.endpoint_or_404(request, endpoint_id)
        self.require_owner_or(request, endpoint, "webhooks.change_webhookendpoint")
        secret = endpoint_services.endpoint_secret_rotate(endpoint=endpoint, actor=request.user)
        return Response(EndpointWithSecretSerializer(endpoint, context={"secret": secret}).data)


class EndpointTestView(EndpointView):
    @extend_schema(
        summary="Send a test delivery",
        description="Queues a signed `webhook.test` delivery to the endpoint (202); read its "
        "outcome in the endpoint's deliveries.",
        request=None,
        responses={202: DeliverySerializer},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self.endpoint_or_404(request, endpoint_id)
        self.require_owner_or(request, endpoint, "webhooks.change_webhookendpoint")
        delivery = services.delivery_send_test(endpoint=endpoint)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class EndpointDeliveriesView(EndpointView):
    # Read by the schema: these pages are documented as limit/offset pages.
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        summary="List an endpoint's deliveries",
        description="Its deliveries with their status, attempts and last response, paged.",
        responses={200: DeliverySerializer(many=True)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self.endpoint_or_404(request, endpoint_id)
        paginator = BoundedLimitOffsetPagination()
        qs = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryRedeliverView(EndpointView):
    @extend_schema(
        summary="Redeliver a delivery",
        description="Sends it again with the same webhook-id, so receivers de-duplicate.",
        request=None,
        responses={202: DeliverySerializer},
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        pk = _uuid(delivery_id)
        delivery = (
            selectors.delivery_list(request.user).select_related("endpoint").filter(pk=pk).first()
            if pk
            else None
        )
        if delivery is None:
            raise NotFoundError("not_found", "No such delivery.")
        self.require_owner_or(request, delivery.endpoint, "webhooks.change_webhookendpoint")
        delivery = services.delivery_redeliver(delivery=delivery)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
