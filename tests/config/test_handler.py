"""The HTTP handler runs the middleware chain and a sync view in one worker thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path

from config.handlers import SyncChainASGIHandler

seen: list[str] = []


class RecordThread:
    """Notes the thread it runs in, around the rest of the chain."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        seen.append(threading.current_thread().name)
        response = self.get_response(request)
        seen.append(threading.current_thread().name)
        return response


def where(request: HttpRequest) -> HttpResponse:
    seen.append(threading.current_thread().name)
    return HttpResponse("ok")


urlpatterns = [path("where/", where)]


@pytest.mark.asyncio
@override_settings(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["localhost"],
    SECURE_SSL_REDIRECT=False,
    MIDDLEWARE=[
        f"{__name__}.RecordThread",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        f"{__name__}.RecordThread",
    ],
)
async def test_middleware_and_view_share_one_thread_per_request() -> None:
    # Django's own handler builds an async chain: each MiddlewareMixin hook is a hop.
    assert iscoroutinefunction(ASGIHandler()._middleware_chain)
    seen.clear()
    handler = SyncChainASGIHandler()
    assert not iscoroutinefunction(handler._middleware_chain)  # entered once
    response = await HttpCommunicator(
        handler, "GET", "/where/", headers=[(b"host", b"localhost")]
    ).get_response()
    assert response["status"] == 200
    assert response["body"] == b"ok"
    assert len(seen) == 5
    assert len(set(seen)) == 1  # one hop: the chain and the view ran in the same thread
    assert seen[0] != threading.current_thread().name  # and not on the event loop
