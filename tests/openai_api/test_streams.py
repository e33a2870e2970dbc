"""The stream translation on its own: text across retries, chunk and response shapes."""

from __future__ import annotations

from typing import Any

from openai_api.streams import ResponseEvents, Transcript


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data}


def test_a_retried_attempt_sends_only_text_beyond_what_was_sent() -> None:
    transcript = Transcript()
    sent = [transcript.feed(event("message.delta", delta=d)) for d in ("Hel", "lo ")]
    sent.append(transcript.feed(event("run.retrying", attempt=2, discard_from_seq=3)))
    sent += [transcript.feed(event("message.delta", delta=d)) for d in ("Hello", " world")]
    assert "".join(sent) == "Hello world"
    assert transcript.sent == "Hello world"


def test_events_other_than_text_send_nothing() -> None:
    transcript = Transcript()
    assert transcript.feed(event("tool.call", call_id="1", name="calculator", args={})) == ""
    assert transcript.feed(event("run.succeeded", output="x")) == ""


def test_response_events_are_numbered_in_order() -> None:
    import uuid

    class FakeRun:
        id = uuid.uuid4()

    events = ResponseEvents(FakeRun())  # type: ignore[arg-type]
    frames = [*events.open_item(), events.delta("Hi"), *events.close_item("Hi")]
    assert [f.split(b"\n", 1)[0] for f in frames] == [
        b"event: response.output_item.added",
        b"event: response.content_part.added",
        b"event: response.output_text.delta",
        b"event: response.output_text.done",
        b"event: response.content_part.done",
        b"event: response.output_item.done",
    ]
    assert events.sequence_number == 6
    assert b'"sequence_number":2' in frames[2]
