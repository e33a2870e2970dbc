from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django_prometheus.exports import ExportToDjangoView

from core.errors import json_error
from monitoring.access import metrics_access
from monitoring.health import readiness


@never_cache
def livez(request: HttpRequest) -> JsonResponse:
    """The process answers; no dependency is checked (a restart would not fix one)."""
    return JsonResponse({"status": "ok"})


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format (django-prometheus' export), for allowed scrapers only."""
    refused = metrics_access(request)
    if refused == "token":
        response = json_error("not_authenticated", "A valid bearer token is required.", 401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if refused == "network":
        message = "Metrics are served to clients on METRICS_ALLOWED_NETWORKS only."
        return json_error("permission_denied", message, 403)
    return ExportToDjangoView(request)


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    ok, body = readiness()
    return JsonResponse(body, status=200 if ok else 503)


def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error("not_found", "No such resource.", 404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error("internal_error", "Something went wrong on our side.", 500)
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)
