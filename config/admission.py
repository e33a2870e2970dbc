"""Load shedding in front of Django: a burst waits its turn, or is told to come back.

Every HTTP request runs a synchronous Django view on a thread of its own that holds a
database connection from the pool while it works. A burst of a thousand requests
otherwise becomes a thousand threads queueing for ``DATABASE_POOL_MAX`` connections,
and those that wait longer than ``DATABASE_POOL_TIMEOUT_S`` fail with a 500. Here at
most ``HTTP_MAX_CONCURRENT_REQUESTS`` requests are inside Django at once; the others
wait in order, up to ``HTTP_QUEUE_TIMEOUT_S``, and are then answered ``503`` with
``Retry-After`` (a deliberate shed, which clients retry), never a 500 or a reset.

A request leaves as soon as its response starts, so a long stream (SSE, a streamed chat
completion) holds a place only while its view sets it up. Health and metrics probes are
never queued.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from django.conf import settings

from monitoring import metrics

_EXEMPT = ("/livez", "/readyz", "/metrics")


class AdmissionLimit:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots = asyncio.Semaphore(settings.HTTP_MAX_CONCURRENT_REQUESTS)
            self._loop = loop
        return self._slots

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        slots = self.slots()
        try:
            await asyncio.wait_for(slots.acquire(), settings.HTTP_QUEUE_TIMEOUT_S)
        except TimeoutError:
            metrics.http_requests_shed.inc()
            await _busy(send)
            return
        held = True

        async def send_and_release(message: dict[str, Any]) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                slots.release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            if held:
                slots.release()


async def _busy(send: Any) -> None:
    retry_after = str(max(1, math.ceil(settings.HTTP_QUEUE_TIMEOUT_S / 2)))
    body = json.dumps(
        {
            "error": {
                "code": "server_busy",
                "message": "The server is busy; retry after the number of seconds in Retry-After.",
                "details": None,
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", retry_after.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
