"""How much the server still holds for a stream client: the write buffer behind a socket.

ASGI has no backpressure for ``send``: daphne hands every message straight to Twisted,
whose transport buffers writes without limit. A client that stops reading would make
that buffer (and the server's memory) grow for as long as the run streams. So the
outermost ASGI layer (``StreamTransportMiddleware``) finds daphne's protocol object
behind ``send`` and puts a ``WriteBuffer`` into the scope; the stream senders wait for
it to drain before writing more, and a client whose buffer stays full while events
queue up behind it is dropped as too slow.

Under another server (or the Channels test communicator) no transport is found and
``pending()`` is None: streams still work, they just cannot measure the client.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

SCOPE_KEY = "switchyard.write_buffer"

# Twisted itself pauses producers above 64 KiB; we wait above that and resume when most
# of it has gone out, so a healthy client never waits and a stuck one is noticed fast.
HIGH_WATER_BYTES = 64 * 1024
LOW_WATER_BYTES = 16 * 1024
DRAIN_POLL_S = 0.005


def _buffered(transport: Any) -> int | None:
    """Bytes a Twisted ``FileDescriptor`` holds that the kernel has not taken yet."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:
        inner = getattr(transport, "transport", None)  # TLS wraps the TCP transport
        return _buffered(inner) if inner is not None and inner is not transport else None


class WriteBuffer:
    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def pending(self) -> int | None:
        transport = getattr(self.protocol, "transport", None)
        return None if transport is None else _buffered(transport)

    def congested(self) -> bool:
        pending = self.pending()
        return pending is not None and pending > HIGH_WATER_BYTES

    async def drained(self, *, give_up: asyncio.Event | None = None) -> bool:
        """Wait until the buffer is below the low-water mark; False if ``give_up`` is set
        first. Polling is cheap here: it only happens while a client is behind."""
        if not self.congested():
            return True
        while True:
            pending = self.pending()
            if pending is None or pending <= LOW_WATER_BYTES:
                return True
            if give_up is not None and give_up.is_set():
                return False
            await asyncio.sleep(DRAIN_POLL_S)

    def allow_close_grace(self, seconds: float) -> None:
        """Give a client this long to read up to our close frame before the connection is
        dropped (autobahn's default is 1 s, too short for a client that paused)."""
        if hasattr(self.protocol, "closeHandshakeTimeout"):
            self.protocol.closeHandshakeTimeout = seconds


class _Unknown(WriteBuffer):
    def __init__(self) -> None:
        super().__init__(None)

    def pending(self) -> int | None:
        return None


def write_buffer_of(scope: dict[str, Any]) -> WriteBuffer:
    return scope.get(SCOPE_KEY) or _Unknown()


class StreamTransportMiddleware:
    """Outermost ASGI wrapper: exposes daphne's per-connection protocol as a WriteBuffer.

    daphne passes ``send=functools.partial(server.handle_reply, protocol)``; only here,
    before any other middleware wraps ``send``, is that protocol reachable.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") in {"http", "websocket"} and isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            if protocol is not None and hasattr(protocol, "transport"):
                scope = {**scope, SCOPE_KEY: WriteBuffer(protocol)}
        return await self.app(scope, receive, send)
