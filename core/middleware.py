"""The API's error shape for what happens outside DRF's exception handler."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.log import log_response

from core.errors import json_error

log = structlog.get_logger(__name__)

API_PREFIXES: tuple[str, ...] = ("/api/", "/v1/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


class ApiErrorMiddleware:
    """Exceptions that escape a view under ``/api/`` or ``/v1/`` become the error shape,
    with DEBUG on too (Django would answer with its HTML debug page)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        if isinstance(exception, Http404):
            return json_error("not_found", "No such resource.", 404)
        if isinstance(exception, PermissionDenied):
            return json_error("permission_denied", "You may not do this.", 403)
        response = json_error("internal_error", "Something went wrong on our side.", 500)
        # As Django's own handler logs it: to django.request with the exception, so the
        # error e-mail and the log keep the traceback (filtered of sensitive variables).
        log_response(
            "Internal Server Error: %s",
            request.path,
            response=response,
            request=request,
            exception=exception,
        )
        return response
