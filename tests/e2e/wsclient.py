"""A small test client for the run stream, on the real ``websockets`` package."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


@dataclass
class StreamResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    pings: int = 0

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]


async def read_stream(
    url: str,
    *,
    token: str | None = None,
    origin: str | None = None,
    cookie: str | None = None,
    stop_after: int | None = None,
    timeout: float = 30,
) -> StreamResult:
    """Read events until the server closes (or ``stop_after`` events, then hang up)."""
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    result = StreamResult()
    async with asyncio.timeout(timeout):
        # max_queue=None: a client that stops early must still read on to the server's
        # close frame, or websockets waits out its 10 s close timeout.
        async with connect(url, additional_headers=headers, origin=origin, max_queue=None) as ws:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "ping":
                        result.pings += 1
                        continue
                    result.events.append(message)
                    if stop_after is not None and len(result.events) >= stop_after:
                        break
            if stop_after is None or len(result.events) < stop_after:
                await ws.wait_closed()
                result.close_code = ws.close_code
    return result
