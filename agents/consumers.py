"""The run stream over WebSocket: replay from the log, then live, each event once.

The protocol (URL, authentication, close codes, keepalives, resuming) is specified in
docs/streaming.md. One sender task per connection writes everything the client gets;
it waits while the client's socket buffer is full, so a client that stops reading costs
a bounded amount of memory and is closed with 4408 once events pile up behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import parse_qs

import structlog
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents import shutdown
from agents.selectors import run_get
from agents.streaming import Frame, RunStream, TooSlow
from agents.transport import WriteBuffer, write_buffer_of
from core.errors import ApplicationError
from monitoring import metrics

log = structlog.get_logger(__name__)

# Close codes, documented in docs/streaming.md.
# autobahn (under daphne) lets a server send only 1000 or 3000-4999, so "going away" and
# "internal error" use 45xx codes rather than 1001 / 1011.
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 4500
CLOSE_GOING_AWAY = 4503
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4408

PING = '{"type":"ping"}'
# How long a client closed as too slow has to read up to the close frame before the
# connection is dropped; its buffers stay bounded meanwhile, nothing more is written.
TOO_SLOW_CLOSE_GRACE_S = 30.0


def parse_after(query_string: bytes) -> int | None:
    """``after`` from the query string: a non-negative integer, 0 when absent."""
    values = parse_qs(query_string.decode("latin1")).get("after")
    if not values:
        return 0
    try:
        after = int(values[0])
    except ValueError:
        return None
    return after if after >= 0 else None


class RunStreamConsumer(AsyncWebsocketConsumer):
    # No per-connection channel-layer channel: live events come from the process-wide
    # feed of the run (agents.streaming), so an idle viewer costs no layer subscription.
    channel_layer_alias = "__no_layer__"

    stream: RunStream | None = None
    sender: asyncio.Task[None] | None = None
    counted = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # daphne cancels every application when it shuts down: tell the client to
            # come back (4503) rather than leave it guessing from a dropped socket.
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": CLOSE_GOING_AWAY})
            raise

    async def connect(self) -> None:
        # Accept first so that a refusal carries a close code the client can read.
        await self.accept()
        close_code = await self._authorize()
        if close_code is not None:
            await self.close(code=close_code)
            return
        metrics.ws_connections.inc()
        self.counted = True
        shutdown.track(self)
        self.sender = asyncio.get_running_loop().create_task(self._send_stream())

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
        run = await database_sync_to_async(run_get)(user, run_id)
        if run is None:
            return CLOSE_NOT_FOUND
        self.stream = RunStream(run.id, after, transport="websocket")
        return None

    @property
    def write_buffer(self) -> WriteBuffer:
        return write_buffer_of(self.scope)

    async def _send_stream(self) -> None:
        """Replay, then live, then close: the one writer of this connection."""
        assert self.stream is not None
        stream = self.stream
        code = CLOSE_NORMAL
        try:
            await stream.open()
            async for page in stream.replay():
                await self._send_frames(page)
            while not stream.finished:
                frames = await stream.next(
                    settings.WS_PING_INTERVAL_S, congested=self.write_buffer.congested
                )
                if frames is None:
                    await self.send(text_data=PING)
                else:
                    await self._send_frames(frames)
        except TooSlow:
            code = CLOSE_TOO_SLOW
            metrics.stream_clients_dropped.labels(transport="websocket", reason="too_slow").inc()
            log.info("stream_client_too_slow", run_id=str(stream.cursor.run_id))
            self.write_buffer.allow_close_grace(TOO_SLOW_CLOSE_GRACE_S)
        except Exception as exc:
            if type(exc).__name__ == "Disconnected":  # autobahn: the client already left
                return
            log.exception("stream_failed", run_id=str(stream.cursor.run_id))
            code = CLOSE_INTERNAL_ERROR
        finally:
            stream.close()
        await self.close(code=code)

    async def _send_frames(self, frames: list[Frame]) -> None:
        assert self.stream is not None
        for frame in frames:
            # Wait while the client's socket is full; the feed keeps queueing meanwhile,
            # and an overflow there is what decides "too slow".
            overflowed = self.stream.subscription.overflowed if self.stream.subscription else None
            await self.write_buffer.drained(give_up=overflowed)
            # base_send directly: the hot path of a fan-out, one call per viewer and event.
            await self.base_send({"type": "websocket.send", "text": frame.text})
        if frames:
            metrics.events_sent.labels(transport="websocket").inc(len(frames))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self.send(text_data='{"type":"pong"}')
        elif kind == "cancel" and self.stream is not None:
            await self._cancel()
        else:
            await self._send_error("unknown_message", 'Send {"type": "cancel"} or ping.')

    async def _cancel(self) -> None:
        from agents.services import run_cancel

        assert self.stream is not None
        try:
            result = await database_sync_to_async(run_cancel)(
                run_id=self.stream.cursor.run_id, actor=self.scope["user"]
            )
        except ApplicationError as exc:  # the run already ended: same answer as the REST 409
            await self._send_error(exc.code, exc.message)
            return
        await self.send(text_data=json.dumps({"type": "cancel.accepted", "status": result}))

    async def _send_error(self, code: str, message: str) -> None:
        await self.send(
            text_data=json.dumps({"type": "error", "error": {"code": code, "message": message}})
        )

    async def disconnect(self, code: int) -> None:
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender
        if self.stream is not None:
            self.stream.close()
        if self.counted:
            metrics.ws_connections.dec()
            self.counted = False
