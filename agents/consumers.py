"""The run stream over WebSocket: replay from the log, then live, each event once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents.models import run_group_name
from agents.runtime.events import Envelope
from agents.selectors import run_for_user
from agents.streaming import StreamCursor
from monitoring import metrics

# Close codes, documented in docs/streaming.md.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4408


def parse_after(query_string: bytes) -> int | None:
    """``after`` from the query string: a non-negative integer, 0 when absent."""
    from urllib.parse import parse_qs

    values = parse_qs(query_string.decode("latin1")).get("after")
    if not values:
        return 0
    try:
        after = int(values[0])
    except ValueError:
        return None
    return after if after >= 0 else None


class RunStreamConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    cursor: StreamCursor | None = None
    pinger: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        # Accept first so that a refusal carries a close code the client can read.
        await self.accept()
        close_code = await self._authorize()
        if close_code is not None:
            await self.close(code=close_code)
            return
        metrics.ws_connections.inc()
        self.counted = True
        assert self.group is not None and self.cursor is not None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._send_events(await self.cursor.replay_all())
        if not self.cursor.finished:
            self.pinger = asyncio.create_task(self._ping())

    async def _authorize(self) -> int | None:
        if self.scope.get("auth_error") == "origin":
            return CLOSE_FORBIDDEN_ORIGIN
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return CLOSE_UNAUTHENTICATED
        after = parse_after(self.scope.get("query_string", b""))
        if after is None:
            return CLOSE_BAD_REQUEST
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        run = await database_sync_to_async(run_for_user)(user, run_id)
        if run is None:
            return CLOSE_NOT_FOUND
        self.group = run_group_name(run.id)
        self.cursor = StreamCursor(run.id, after)
        return None

    async def run_events(self, message: dict[str, Any]) -> None:
        """Group message from the runtime: a batch of events, maybe with gaps or repeats."""
        if self.cursor is None or self.cursor.finished:
            return
        await self._send_events(await self.cursor.accept(message["events"]))

    async def _send_events(self, events: list[Envelope]) -> None:
        for envelope in events:
            await self.send(text_data=json.dumps(envelope))
        if events:
            metrics.events_sent.labels(transport="websocket").inc(len(events))
        if self.cursor is not None and self.cursor.finished:
            await self.close(code=CLOSE_NORMAL)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(settings.WS_PING_INTERVAL_S)
            await self.send(text_data='{"type": "ping"}')

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self.send(text_data='{"type": "pong"}')
        elif kind == "cancel":
            await self._cancel()
        else:
            await self.send(
                text_data=json.dumps(
                    {
                        "type": "error",
                        "error": {
                            "code": "unknown_message",
                            "message": 'Send {"type": "cancel"} or ping.',
                        },
                    }
                )
            )

    async def _cancel(self) -> None:
        from agents.services import run_cancel

        assert self.cursor is not None
        result = await database_sync_to_async(run_cancel)(
            run_id=self.cursor.run_id, actor=self.scope["user"]
        )
        await self.send(text_data=json.dumps({"type": "cancel.accepted", "status": result}))

    async def disconnect(self, code: int) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pinger
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if getattr(self, "counted", False):
            metrics.ws_connections.dec()
