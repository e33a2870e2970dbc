"""A run's events as OpenAI streams: ``chat.completion.chunk``s and Responses events.

Events are read the way the run stream's SSE endpoint reads them (``agents.streaming``:
subscribe, replay the log, then live, each seq once), so nothing the run produced is
lost or repeated. When the client goes away the generator is closed and the run goes on:
disconnecting never cancels a run (docs/openai.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from agents.models import Run
from agents.runtime.events import Envelope
from agents.streaming import RunStream
from monitoring import metrics
from openai_api import services
from openai_api.errors import run_failure

KEEPALIVE = b": keepalive\n\n"


def keepalive_s() -> float:
    return float(settings.SSE_KEEPALIVE_S)


async def run_events(
    run_id: Any, congested: Callable[[], bool] = lambda: False
) -> AsyncIterator[Envelope | None]:
    """Each event of the run once, in order, up to the terminal one; None after each
    quiet keepalive interval (so that a caller can keep its connection alive)."""
    stream = RunStream(run_id, 0, transport="openai")
    await stream.open()
    try:
        async for page in stream.replay():
            for frame in page:
                yield frame.envelope
        while not stream.finished:
            frames = await stream.next(keepalive_s(), congested=congested)
            if frames is None:
                yield None
                continue
            metrics.events_sent.labels(transport="openai").inc(len(frames))
            for frame in frames:
                yield frame.envelope
    finally:
        stream.close()


class Transcript:
    """The text a client has been sent. After ``run.retrying`` a new attempt writes its
    answer again from the start; only what goes beyond the text already sent is new."""

    def __init__(self) -> None:
        self.sent = ""
        self.attempt = ""

    def feed(self, envelope: Envelope) -> str:
        if envelope["type"] == "run.retrying":
            self.attempt = ""
        elif envelope["type"] == "message.delta":
            self.attempt += envelope["data"].get("delta", "")
            if len(self.attempt) > len(self.sent):
                new = self.attempt[len(self.sent) :]
                self.sent = self.attempt
                return new
        return ""


async def finished_run(run_id: Any) -> Run:
    """Wait for the run's terminal event; the run as stored then."""
    async for _ in run_events(run_id):
        pass
    return await sync_to_async(_load)(run_id)


def _load(run_id: Any) -> Run:
    return Run.objects.select_related("agent").get(pk=run_id)


def sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode()


async def chat_stream(
    run: Run, *, include_usage: bool, congested: Callable[[], bool]
) -> AsyncIterator[bytes]:
    """``chat.completion.chunk``s as the run writes text, then the finish reason, the
    usage chunk when asked for, and ``[DONE]``. A run that ends in an error ends the
    stream with an ``{"error": ...}`` event, which the SDKs raise as an ``APIError``."""
    transcript = Transcript()
    yield sse(
        services.chat_chunk(run, {"role": "assistant", "content": ""}, with_usage=include_usage)
    )
    async for envelope in run_events(run.id, congested):
        if envelope is None:
            yield KEEPALIVE
            continue
        text = transcript.feed(envelope)
        if text:
            yield sse(services.chat_chunk(run, {"content": text}, with_usage=include_usage))
    done = await sync_to_async(_load)(run.id)
    reason = services.finish_reason(done)
    if reason is None:
        yield sse(run_failure(done.error_code, done.error_message).body())
        return
    yield sse(services.chat_chunk(done, {}, reason, with_usage=include_usage))
    if include_usage:
        yield sse(services.chat_chunk(done, None, with_usage=True))
    yield b"data: [DONE]\n\n"


class ResponseEvents:
    """The Responses API's event sequence for one run, numbered as it goes."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.sequence_number = 0
        self.item_id = f"msg_{run.id.hex}"
        self.item_open = False

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return sse(payload, event=kind)

    def lifecycle(self, kind: str, run: Run, text: str | None = None) -> bytes:
        return self.event(kind, response=services.response_object(run, text=text))

    def open_item(self) -> list[bytes]:
        self.item_open = True
        item = services.message_item(self.run, "", "in_progress")
        item["content"] = []
        common = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return [
            self.event("response.output_item.added", output_index=0, item=item),
            self.event("response.content_part.added", **common, part=services.output_text_part("")),
        ]

    def delta(self, text: str) -> bytes:
        return self.event(
            "response.output_text.delta",
            item_id=self.item_id,
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def close_item(self, text: str) -> list[bytes]:
        common = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return [
            self.event("response.output_text.done", **common, text=text, logprobs=[]),
            self.event(
                "response.content_part.done", **common, part=services.output_text_part(text)
            ),
            self.event(
                "response.output_item.done",
                output_index=0,
                item=services.message_item(self.run, text, "completed"),
            ),
        ]


TERMINAL_EVENT = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    "cancelled": "response.failed",
}


async def response_stream(run: Run, *, congested: Callable[[], bool]) -> AsyncIterator[bytes]:
    """``response.created``, ``response.in_progress``, the output item with its
    ``response.output_text.delta``s and ``.done``, then ``response.completed``, or
    ``response.incomplete`` (blocked, output cap) or ``response.failed`` (failed,
    timed out, cancelled)."""
    events = ResponseEvents(run)
    transcript = Transcript()
    yield events.lifecycle("response.created", run, text="")
    async for envelope in run_events(run.id, congested):
        if envelope is None:
            yield KEEPALIVE
            continue
        if envelope["type"] == "run.started":
            run.status = "running"
            yield events.lifecycle("response.in_progress", run, text="")
        text = transcript.feed(envelope)
        if text:
            if not events.item_open:
                for chunk in events.open_item():
                    yield chunk
            yield events.delta(text)
    done = await sync_to_async(_load)(run.id)
    if events.item_open:
        for chunk in events.close_item(transcript.sent):
            yield chunk
    status = services.response_status(done)
    yield events.lifecycle(TERMINAL_EVENT[status], done, text=transcript.sent)
