"""The admission limit in front of Django: a burst waits its turn or gets a 503 with
Retry-After, never more than the limit inside at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from config.admission import AdmissionLimit

pytestmark = pytest.mark.asyncio


class SlowApp:
    """An ASGI app that takes ``delay`` before its response starts, counting who is in."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.inside = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        await asyncio.sleep(self.delay)
        self.inside -= 1
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await asyncio.sleep(self.delay)  # a long body (a stream) no longer holds a place
        await send({"type": "http.response.body", "body": b"{}"})


async def request(app: Any, path: str = "/api/v1/agents/demo/runs/") -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "POST"}, None, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return {"status": start["status"], "headers": dict(start["headers"]), "body": body}


async def test_a_burst_beyond_the_limit_waits_in_turn_and_all_get_in(settings: Any) -> None:
    settings.HTTP_MAX_CONCURRENT_REQUESTS = 3
    settings.HTTP_QUEUE_TIMEOUT_S = 5
    inner = SlowApp(0.05)
    app = AdmissionLimit(inner)
    results = await asyncio.gather(*(request(app) for _ in range(20)))
    assert [r["status"] for r in results] == [201] * 20
    assert inner.peak == 3


async def test_who_waits_too_long_gets_503_with_retry_after(settings: Any) -> None:
    settings.HTTP_MAX_CONCURRENT_REQUESTS = 2
    settings.HTTP_QUEUE_TIMEOUT_S = 0.1
    app = AdmissionLimit(SlowApp(0.5))
    results = await asyncio.gather(*(request(app) for _ in range(5)))
    statuses = sorted(r["status"] for r in results)
    assert statuses == [201, 201, 503, 503, 503]
    shed = next(r for r in results if r["status"] == 503)
    assert int(shed["headers"][b"retry-after"]) >= 1
    assert json.loads(shed["body"])["error"]["code"] == "server_busy"


async def test_health_probes_are_never_queued(settings: Any) -> None:
    settings.HTTP_MAX_CONCURRENT_REQUESTS = 1
    settings.HTTP_QUEUE_TIMEOUT_S = 0.05
    inner = SlowApp(0.3)
    app = AdmissionLimit(inner)
    busy = asyncio.create_task(request(app))
    await asyncio.sleep(0.01)
    probe = await request(app, "/readyz")
    assert probe["status"] == 201
    assert (await busy)["status"] == 201
