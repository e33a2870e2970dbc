"""Streaming building blocks in one process: cursor, feed and viewer, SSE view, admin timeline.

The end-to-end behaviour (real daphne, workers and clients) is in tests/e2e.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import AsyncClient, RequestFactory
from django.utils import timezone

from agents.admin.runs import timeline
from agents.consumers import parse_after
from agents.models import Run, RunEvent
from agents.runtime.events import envelope_of
from agents.sse import parse_resume_point
from agents.streaming import RunStream, StreamCursor, TooSlow, hub

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _close_thread_connections() -> Any:
    yield
    # sync_to_async ran the ORM in asgiref's single thread: close its connection there, or
    # the test database cannot be dropped at the end of the session.
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


def make_run(agent: Any, owner: Any, events: list[tuple[str, dict[str, Any]]]) -> Run:
    run = Run.objects.create(agent=agent, owner=owner, input="x", config={})
    for seq, (type_, data) in enumerate(events, start=1):
        RunEvent.objects.create(run=run, seq=seq, type=type_, data=data, created_at=timezone.now())
    return run


def add_events(run: Run, start: int, events: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    out = []
    for seq, (type_, data) in enumerate(events, start=start):
        event = RunEvent.objects.create(
            run=run, seq=seq, type=type_, data=data, created_at=timezone.now()
        )
        out.append(envelope_of(event))
    return out


def deltas(n: int) -> list[tuple[str, dict[str, Any]]]:
    return [("message.delta", {"delta": f"d{i} "}) for i in range(n)]


def test_after_and_last_event_id_accept_only_seqs() -> None:
    assert parse_after(b"") == 0 and parse_after(b"after=12") == 12
    assert parse_after(b"after=-1") is None and parse_after(b"after=x") is None
    factory = RequestFactory()
    assert parse_resume_point(factory.get("/", {"after": "3"})) == 3
    assert parse_resume_point(factory.get("/", {"after": "3"}, HTTP_LAST_EVENT_ID="9")) == 9
    assert parse_resume_point(factory.get("/", HTTP_LAST_EVENT_ID="nope")) is None


@pytest.mark.asyncio
async def test_a_cursor_skips_repeats_and_fills_a_gap_from_the_log(
    demo_agent: Any, alice: Any
) -> None:
    # Given a run whose log holds seqs 1..6
    run = await sync_to_async(make_run)(demo_agent, alice, [("run.queued", {}), *deltas(5)])
    stored = [envelope_of(e) async for e in RunEvent.objects.filter(run=run).order_by("seq")]
    cursor = StreamCursor(run.id, after=1)
    # When the doorbell brings 2, a repeat of 2, then 5 and 6 (3 and 4 were lost)
    out = await cursor.accept([stored[1], stored[1]])
    out += await cursor.accept([stored[5], stored[4]])
    # Then the cursor passes on 2..6, each once and in order
    assert [e["seq"] for e in out] == [2, 3, 4, 5, 6]
    assert cursor.gap_filled == 2


@pytest.mark.asyncio
async def test_a_viewer_gets_replay_then_live_exactly_once_through_the_feed(
    demo_agent: Any, alice: Any
) -> None:
    # Given a run with 3 stored events and a viewer that has seen 1
    run = await sync_to_async(make_run)(demo_agent, alice, [("run.queued", {}), *deltas(2)])
    stream = RunStream(run.id, after=1, transport="test")
    await stream.open()
    seen = [f.seq async for page in stream.replay() for f in page]
    # When more events are stored and published, one of them twice and one not at all
    live = await sync_to_async(add_events)(run, 4, [*deltas(3), ("run.succeeded", {})])
    layer = get_channel_layer()
    group = f"run.{run.id}"
    await layer.group_send(group, {"type": "run.events", "events": live[:1] + live[:1]})
    await layer.group_send(group, {"type": "run.events", "events": live[2:]})
    while not stream.finished:
        frames = await asyncio.wait_for(stream.next(5, congested=lambda: False), 10)
        seen += [f.seq for f in frames or []]
    stream.close()
    # Then it saw 2..7 once each, the lost 5 filled from the log
    assert seen == [2, 3, 4, 5, 6, 7]
    assert str(run.id) not in hub().feeds


@pytest.mark.asyncio
async def test_an_overflowing_viewer_is_too_slow_only_when_its_socket_is_full(
    demo_agent: Any, alice: Any
) -> None:
    run = await sync_to_async(make_run)(demo_agent, alice, [("run.queued", {})])
    reading = RunStream(run.id, after=0, transport="test")
    stuck = RunStream(run.id, after=0, transport="test")
    for stream in (reading, stuck):
        await stream.open()
        stream.subscription.maxsize = 2  # type: ignore[union-attr]
        stream.subscription.inbox = asyncio.Queue(2)  # type: ignore[union-attr]
        _ = [page async for page in stream.replay()]
    live = await sync_to_async(add_events)(run, 2, deltas(5))
    await get_channel_layer().group_send(f"run.{run.id}", {"type": "run.events", "events": live})
    await asyncio.sleep(0.2)
    # A viewer that reads but fell behind catches up from the log
    frames = await reading.next(1, congested=lambda: False)
    assert [f.seq for f in frames or []] == [2, 3, 4, 5, 6]
    # A viewer whose socket is full is too slow
    with pytest.raises(TooSlow):
        await stuck.next(1, congested=lambda: True)
    reading.close()
    stuck.close()


@pytest.mark.asyncio
async def test_sse_answers_401_404_204_and_streams_a_finished_run(
    demo_agent: Any, alice: Any, charlie: Any
) -> None:
    from agents.token_services import api_token_create

    run = await sync_to_async(make_run)(
        demo_agent, alice, [("run.queued", {}), *deltas(2), ("run.succeeded", {"output": "x"})]
    )
    await Run.objects.filter(pk=run.pk).aupdate(status="succeeded")
    alice_token = await sync_to_async(api_token_create)(user=alice)
    charlie_token = await sync_to_async(api_token_create)(user=charlie)
    client = AsyncClient()
    url = f"/api/v1/runs/{run.id}/stream/"
    assert (await client.get(url)).status_code == 401
    outsider = await client.get(url, headers={"Authorization": f"Bearer {charlie_token}"})
    unknown = await client.get(
        f"/api/v1/runs/{uuid.uuid4()}/stream/", headers={"Authorization": f"Bearer {charlie_token}"}
    )
    assert outsider.status_code == unknown.status_code == 404
    auth = {"Authorization": f"Bearer {alice_token}"}
    response = await client.get(url, {"after": "1"}, headers=auth)
    assert response["Content-Type"] == "text/event-stream"
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert "id: 2\nevent: message.delta\n" in body and "id: 4\nevent: run.succeeded\n" in body
    assert "id: 1\n" not in body
    done = await client.get(url, headers={**auth, "Last-Event-ID": "4"})
    assert done.status_code == 204


@pytest.mark.asyncio
async def test_the_request_id_middleware_runs_async_without_a_thread() -> None:
    from monitoring.middleware import RequestIdMiddleware

    async def view(request: Any) -> Any:
        from django.http import HttpResponse

        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    response = await middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="abc-1"))
    assert response["X-Request-ID"] == "abc-1"


def test_the_admin_timeline_joins_deltas_into_message_text() -> None:
    at = timezone.now()  # stored events always have a time, which the timeline shows
    events = [
        RunEvent(created_at=at, seq=1, type="run.started", data={}),
        RunEvent(created_at=at, seq=2, type="message.delta", data={"delta": "Hel"}),
        RunEvent(created_at=at, seq=3, type="message.delta", data={"delta": "lo"}),
        RunEvent(created_at=at, seq=4, type="message.completed", data={"content": "Hello"}),
        RunEvent(
            created_at=at, seq=5, type="tool.call", data={"name": "calculator", "args": {"x": 1}}
        ),
        RunEvent(created_at=at, seq=6, type="message.delta", data={"delta": "still going"}),
    ]
    items = timeline(events)
    assert [i["kind"] for i in items] == ["run", "message", "tool", "message"]
    assert items[1]["text"] == "Hello" and items[3]["text"] == "still going"
    assert '"calculator"' in items[2]["data"]


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [3, 7])
async def test_a_websocket_resumed_at_or_after_the_terminal_event_closes_at_once_with_1000(
    demo_agent: Any, alice: Any, after: int
) -> None:
    from channels.testing import WebsocketCommunicator

    from agents.consumers import RunStreamConsumer

    # given a finished run whose terminal event is seq 3
    run = await sync_to_async(make_run)(
        demo_agent, alice, [("run.queued", {}), ("run.started", {}), ("run.succeeded", {})]
    )
    # when its owner resumes after the terminal event (or beyond it)
    app = RunStreamConsumer.as_asgi()
    ws = WebsocketCommunicator(app, f"/ws/runs/{run.id}/?after={after}")
    ws.scope["user"] = alice
    ws.scope["url_route"] = {"kwargs": {"run_id": str(run.id)}}
    ws.scope["query_string"] = f"after={after}".encode()
    connected, _ = await ws.connect()
    assert connected
    # then the server closes normally right away, sending nothing (no pings)
    message = await ws.receive_output(timeout=3)
    assert message == {"type": "websocket.close", "code": 1000}
    await ws.wait()
