"""Views every API shares: the answer for unknown paths and for CSRF failures."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import json_error
from core.middleware import is_api_path


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The catch-all under ``/api/`` and ``/v1/``: a JSON 404 for any method, also with
    DEBUG on (where Django's ``handler404`` is not used)."""
    return json_error("not_found", f"No such resource: {request.path}", 404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the error shape under the API, Django's page elsewhere."""
    if is_api_path(request.path):
        return json_error("csrf_failed", f"CSRF check failed: {reason}", 403)
    return django_csrf_failure(request, reason=reason)


class ApiRootView(APIView):
    """``GET /api/v1/``: the resources of the API, by name, as paths."""

    permission_classes = [AllowAny]
    resources: ClassVar[dict[str, str]] = {}

    @extend_schema(
        summary="API root",
        description="The resources of the API and where the schema and its docs are.",
        responses={200: OpenApiTypes.OBJECT},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "resources": {name: reverse(url_name) for name, url_name in self.resources.items()},
                "schema": reverse("schema"),
                "docs": {"swagger": reverse("swagger-ui"), "redoc": reverse("redoc")},
            }
        )
