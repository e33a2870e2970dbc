"""Django's HTTP handler for daphne, with the middleware chain run in one thread hop.

Django's ``ASGIHandler`` builds an *async* middleware chain. Every ``MiddlewareMixin``
middleware (all of Django's own, and django-prometheus's) then runs each of its
``process_request``/``process_view``/``process_response`` hooks through its own
``sync_to_async`` call: about fifteen thread hops per request, which measured ~4 ms of CPU
per API call on the 2-core machines (docs/performance.md). Our views are synchronous DRF
views, which Django runs in a worker thread anyway; so the whole chain runs there, once.

The one async view (the SSE stream, agents/sse.py) is adapted by Django with
``async_to_sync`` and runs on the server's event loop until it returns its response; its
body, an async iterator, is streamed by the handler on the event loop as before.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # ``get_response`` also sets the urlconf, registers request.close and logs 4xx/5xx.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
