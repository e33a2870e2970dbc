"""Graceful shutdown for stream clients: on SIGTERM, close every run stream with 4503
("server going away", docs/streaming.md) before daphne stops.

daphne, on SIGTERM, drops its sockets without giving applications a chance to send a
close frame, so clients would see an abnormal closure (1006) and could not tell a
restart from a network fault. This handler runs first, closes the streams, waits a
moment for the frames to leave, then hands the signal to daphne's own handler.
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

CLOSE_FRAMES_GRACE_S = 0.3

_streams: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False


def track(consumer: Any) -> None:
    """Remember an open stream (a consumer with ``async close(code=...)``)."""
    _streams.add(consumer)


def install(loop: asyncio.AbstractEventLoop, close_code: int) -> None:
    """Install the SIGTERM hook once, from the server's main thread."""
    global _installed
    if _installed:
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main thread: nothing to hook (e.g. a test client)
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.create_task(_go_away(close_code, lambda: _hand_over(previous, signum, frame)))

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        return
    _installed = True


async def _go_away(close_code: int, then: Callable[[], None]) -> None:
    closing: list[Awaitable[Any]] = [c.close(code=close_code) for c in list(_streams)]
    await asyncio.gather(*closing, return_exceptions=True)
    await asyncio.sleep(CLOSE_FRAMES_GRACE_S)
    then()


def _hand_over(previous: Any, signum: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(signum, frame)
    else:  # SIG_DFL: terminate as the signal would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
