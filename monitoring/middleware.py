"""Request logging and the request id, on django-structlog's ``RequestMiddleware``.

The id is taken from ``X-Request-ID`` when the caller sends a sane one (else generated),
bound into structlog's context for every line logged while the request is handled,
carried into the Celery tasks it publishes (``monitoring.task_context``) and returned in
the response's ``X-Request-ID``. Each request logs one ``request_finished`` line.

Three departures from django-structlog's defaults, each for a reason:

- its own id is replaced by ours, which validates what the client sent (a header is
  not a safe thing to copy into every log line unchecked);
- in async mode its bookkeeping runs inline instead of through ``sync_to_async``: it only
  binds and logs, and a thread hop per request would push every SSE stream through the
  thread pool just because this middleware sits in the chain;
- the user id is logged only when authentication already loaded the user (a lazy user is
  never evaluated for the log, which would cost a query, or fail in async code), and the
  path is logged without its query string, which can carry tokens.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable
from typing import Any, cast

import structlog
from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty
from django_structlog import signals
from django_structlog.app_settings import app_settings
from django_structlog.middlewares import RequestMiddleware

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REQUEST_ID_HEADER = "X-Request-ID"

log = structlog.get_logger(__name__)


def request_id_from(request: HttpRequest) -> str:
    """The client's ``X-Request-ID`` when it is 1-64 of ``[A-Za-z0-9._-]``, else a new one."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex


class RequestIdMiddleware(RequestMiddleware):
    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        self.prepare(request)
        response = cast(HttpResponse, self.get_response(request))  # the sync chain
        self.handle_response(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self.prepare(request)
        try:
            response = await cast(Awaitable[HttpResponse], self.get_response(request))
        except asyncio.CancelledError:
            log.log(app_settings.REQUEST_CANCELLED_LOG_LEVEL, "request_cancelled")
            raise
        self.handle_response(request, response)
        return response

    def prepare(self, request: HttpRequest) -> None:
        request.request_id = request_id_from(request)  # type: ignore[attr-defined]
        # A thread reused from the pool may still hold the last request's bindings.
        structlog.contextvars.clear_contextvars()
        super().prepare(request)

    def handle_response(self, request: HttpRequest, response: HttpResponse) -> None:
        super().handle_response(request, response)
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]

    @staticmethod
    def format_request(request: HttpRequest) -> str:
        return f"{request.method} {request.path}"

    @staticmethod
    def bind_user_id(request: HttpRequest) -> None:
        user = request.__dict__.get("user")
        if user is None:
            return
        if isinstance(user, SimpleLazyObject):
            if user._wrapped is empty:
                return
            user = user._wrapped
        if getattr(user, "is_authenticated", False):
            structlog.contextvars.bind_contextvars(user_id=user.pk)


def _bind_request_id(request: HttpRequest, **kwargs: Any) -> None:
    # Sent by RequestMiddleware.prepare after it bound its own id, before request_started.
    structlog.contextvars.bind_contextvars(request_id=request.request_id)  # type: ignore[attr-defined]


signals.bind_extra_request_metadata.connect(_bind_request_id, weak=False)
