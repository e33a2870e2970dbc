"""The run stream as Server-Sent Events: ``GET /api/v1/runs/<uuid>/stream/``.

An async Django view (no thread per client under daphne) on the same ``RunStream`` as
the WebSocket: ``id:`` is the seq, ``Last-Event-ID`` (what EventSource sends when it
reconnects) or ``?after=`` say where to resume, and a comment line keeps idle
connections open. Specified in docs/streaming.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from agents.auth import user_for_token
from agents.lifecycle import is_terminal
from agents.selectors import run_get
from agents.streaming import Frame, RunStream, TooSlow, last_event
from agents.transport import WriteBuffer, write_buffer_of
from core.errors import json_error
from monitoring import metrics

log = structlog.get_logger(__name__)

KEEPALIVE = b": keepalive\n\n"
# EventSource waits this long before reconnecting after the stream ends or breaks.
RETRY_MS = 1000


def keepalive_interval_s() -> float:
    return float(settings.SSE_KEEPALIVE_S)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return json_error(code, message, status)


def parse_resume_point(request: HttpRequest) -> int | None:
    """``Last-Event-ID`` wins over ``?after=`` (the URL keeps its first ``after`` when
    EventSource reconnects); absent both, 0. None when the value is not a seq."""
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    # Digits only, as the schema says: int() would also take " 5", "+5" and "5_0".
    return int(raw) if raw.isascii() and raw.isdigit() else None


async def _authenticate(request: HttpRequest) -> Any:
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return await user_for_token(authorization[7:].strip())
    return await request.auser()


def _event(frame: Frame) -> bytes:
    return f"id: {frame.seq}\nevent: {frame.envelope['type']}\ndata: {frame.text}\n\n".encode()


async def run_stream(request: HttpRequest, run_id: str) -> HttpResponseBase:
    if request.method != "GET":
        refused = _error(405, "method_not_allowed", "Use GET.")
        refused["Allow"] = "GET"
        return refused
    user = await _authenticate(request)
    if not user.is_authenticated:
        return _error(401, "not_authenticated", "Send a bearer token or a session cookie.")
    run = await sync_to_async(run_get)(user, run_id)
    if run is None:
        return _error(404, "not_found", "No such run.")
    after = parse_resume_point(request)
    if after is None:
        return _error(400, "invalid_request", "after / Last-Event-ID must be a seq (>= 0).")
    if is_terminal(run.status):
        last = await sync_to_async(last_event)(run.id)
        if last is None or after >= last[0]:
            # Nothing left to send, ever: 204 is what makes EventSource stop reconnecting.
            return HttpResponse(status=204)
    stream = RunStream(run.id, after, transport="sse")
    response = StreamingHttpResponse(
        _body(stream, write_buffer_of(request.scope)),  # type: ignore[attr-defined]
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a buffering proxy would hold events back
    return response


async def _body(stream: RunStream, write_buffer: WriteBuffer) -> AsyncIterator[bytes]:
    metrics.sse_connections.inc()
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        await stream.open()
        async for page in stream.replay():
            async for chunk in _frames(page, stream, write_buffer):
                yield chunk
        while not stream.finished:
            frames = await stream.next(keepalive_interval_s(), congested=write_buffer.congested)
            if frames is None:
                yield KEEPALIVE
                continue
            async for chunk in _frames(frames, stream, write_buffer):
                yield chunk
        # A finished stream: EventSource reconnects by itself, and then gets a 204 below.
    except TooSlow:
        metrics.stream_clients_dropped.labels(transport="sse", reason="too_slow").inc()
        yield b'event: error\ndata: {"type":"error","error":{"code":"too_slow"}}\n\n'
    finally:
        stream.close()
        metrics.sse_connections.dec()


async def _frames(
    frames: list[Frame], stream: RunStream, write_buffer: WriteBuffer
) -> AsyncIterator[bytes]:
    for frame in frames:
        overflowed = stream.subscription.overflowed if stream.subscription else None
        await write_buffer.drained(give_up=overflowed)
        yield _event(frame)
    if frames:
        metrics.events_sent.labels(transport="sse").inc(len(frames))
