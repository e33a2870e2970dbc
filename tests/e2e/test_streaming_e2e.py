"""End to end: resumable, exactly-once run streams over WebSocket and SSE (issue 5).

Real daphne, real workers, real ``websockets`` / ``httpx`` clients. Tests taking the
``stack`` fixture run on both stacks (distributed: Celery + PostgreSQL + Redis pub/sub
layer; embedded: in-process executor + SQLite + in-memory layer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Stack
from tests.e2e.streams import (
    TERMINAL,
    SyntheticRun,
    assert_exactly_once,
    metric,
    read_sse,
    rss_kib,
    small_buffer_socket,
    start_demo_run,
    wait_until,
)
from tests.e2e.wsclient import read_stream

pytestmark = pytest.mark.e2e


def ws_url(stack: Stack, run_id: str, after: int = 0) -> str:
    return f"{stack.ws_url}/ws/runs/{run_id}/?after={after}"


async def read_in_pieces(stack: Stack, run_id: str, cuts: list[int]) -> list[dict[str, Any]]:
    """Hang up after each cut point and resume with ``after`` = the last seq seen."""
    seen: list[dict[str, Any]] = []

    def last() -> int:
        return seen[-1]["seq"] if seen else 0

    def done() -> bool:
        return bool(seen) and seen[-1]["type"] in TERMINAL

    for cut in cuts:
        if done():
            break
        if cut > last():
            part = await read_stream(
                ws_url(stack, run_id, last()), token=stack.token, stop_after=cut - last()
            )
            seen.extend(part.events)
    if not done():
        seen.extend((await read_stream(ws_url(stack, run_id, last()), token=stack.token)).events)
    return seen


def test_resuming_at_fifty_random_points_of_a_200_event_run_sees_each_event_once(
    stack: Stack,
) -> None:
    # Given a run of 200+ events that is streaming right now (240 words, 20 ms apart: a
    # loaded machine may coalesce a few deltas that fall into one flush window)
    run_id = start_demo_run(stack, 240)
    # When a client hangs up at 60 random seqs and resumes each time with after=<last seq>
    cuts = sorted(random.Random(5).sample(range(1, 196), 60))
    seen = asyncio.run(read_in_pieces(stack, run_id, cuts))
    # Then what it saw, put together, is 1..N with each seq once
    assert_exactly_once(seen, run_id)
    assert len(seen) >= 200


def test_resuming_a_finished_run_at_every_seq_returns_exactly_the_rest(stack: Stack) -> None:
    # Given a finished run of about 200 events
    run_id = start_demo_run(stack, 190)
    full = asyncio.run(read_stream(ws_url(stack, run_id), token=stack.token, timeout=60))
    assert_exactly_once(full.events, run_id)
    n = len(full.events)

    # When a client resumes after every seq and reads up to three events
    async def resume_everywhere() -> list[list[int]]:
        out = []
        for after in range(n):
            part = await read_stream(ws_url(stack, run_id, after), token=stack.token, stop_after=3)
            out.append(part.seqs)
        return out

    # Then each resume starts exactly at after + 1
    for after, seqs in enumerate(asyncio.run(resume_everywhere())):
        assert seqs == list(range(after + 1, min(after + 3, n) + 1)), (after, seqs)


def test_fifty_concurrent_viewers_receive_identical_complete_sequences(stack: Stack) -> None:
    # Given a streaming run
    run_id = start_demo_run(stack, 120)

    # When 40 viewers join at once and 10 more join mid-stream
    async def watch() -> list[Any]:
        first = [
            read_stream(ws_url(stack, run_id), token=stack.token, timeout=60) for _ in range(40)
        ]
        tasks = [asyncio.ensure_future(c) for c in first]
        await asyncio.sleep(1.0)
        late = [
            read_stream(ws_url(stack, run_id), token=stack.token, timeout=60) for _ in range(10)
        ]
        return await asyncio.gather(*tasks, *late)

    results = asyncio.run(watch())
    # Then all 50 saw the same complete sequence and a normal close
    reference = results[0].events
    assert_exactly_once(reference, run_id)
    for result in results:
        assert result.events == reference
        assert result.close_code == 1000


def test_sse_resumes_exactly_with_last_event_id_and_with_after(stack: Stack) -> None:
    # Given a streaming run and an SSE client that hangs up after 25 events
    run_id = start_demo_run(stack, 80)
    status, first, _ = read_sse(stack, run_id, stop_after=25)
    assert status == 200
    # When it reconnects with Last-Event-ID (as EventSource does), the URL's after is stale
    status, rest, _ = read_sse(stack, run_id, after=3, last_event_id=first[-1]["seq"])
    # Then it gets exactly the rest
    assert status == 200
    assert_exactly_once(first + rest, run_id)
    # And ?after= alone works too, on the finished run
    _, tail, _ = read_sse(stack, run_id, after=10)
    assert tail == (first + rest)[10:]
    # And reconnecting after the last event gets 204, which stops EventSource
    assert read_sse(stack, run_id, last_event_id=rest[-1]["seq"])[0] == 204


def test_the_events_endpoint_pages_through_the_same_envelopes(stack: Stack) -> None:
    run_id = start_demo_run(stack, 30)
    streamed = asyncio.run(read_stream(ws_url(stack, run_id), token=stack.token)).events
    paged: list[dict[str, Any]] = []
    after = 0
    with stack.client() as client:
        while True:
            page = client.get(
                f"/api/v1/runs/{run_id}/events/", params={"after": after, "limit": 7}
            ).json()
            paged.extend(page["events"])
            after = page["next_after"]
            if not page["has_more"]:
                break
    assert paged == streamed


def test_sse_refuses_anonymous_clients_outsiders_and_unknown_runs_alike(stack: Stack) -> None:
    run_id = start_demo_run(stack, 3)
    url = f"{stack.base_url}/api/v1/runs/{run_id}/stream/"
    assert httpx.get(url).status_code == 401
    outsider = stack.user_token(f"charlie{uuid.uuid4().hex[:6]}")
    refused = httpx.get(url, headers={"Authorization": f"Bearer {outsider}"})
    unknown = httpx.get(
        f"{stack.base_url}/api/v1/runs/{uuid.uuid4()}/stream/",
        headers={"Authorization": f"Bearer {outsider}"},
    )
    assert refused.status_code == unknown.status_code == 404
    assert refused.json() == unknown.json()
    assert (
        httpx.get(
            url, headers={"Authorization": f"Bearer {stack.token}"}, params={"after": "x"}
        ).status_code
        == 400
    )


def test_a_superuser_may_watch_any_run_and_others_get_4404_whether_or_not_it_exists(
    stack: Stack,
) -> None:
    alice = stack.user_token(f"alice{uuid.uuid4().hex[:6]}")
    bob = stack.user_token(f"bob{uuid.uuid4().hex[:6]}", superuser=True)
    charlie = stack.user_token(f"charlie{uuid.uuid4().hex[:6]}")
    run_id = start_demo_run(stack, 5, token=alice)
    assert_exactly_once(asyncio.run(read_stream(ws_url(stack, run_id), token=bob)).events, run_id)
    assert_exactly_once(asyncio.run(read_stream(ws_url(stack, run_id), token=alice)).events, run_id)
    outsider = asyncio.run(read_stream(ws_url(stack, run_id), token=charlie))
    unknown = asyncio.run(read_stream(ws_url(stack, str(uuid.uuid4())), token=charlie))
    malformed = asyncio.run(read_stream(f"{stack.ws_url}/ws/runs/not-a-uuid/", token=charlie))
    assert outsider.close_code == unknown.close_code == malformed.close_code == 4404
    bad_after = asyncio.run(read_stream(ws_url(stack, run_id).replace("=0", "=-1"), token=alice))
    assert bad_after.close_code == 4400


def test_a_cancel_message_cancels_the_run_like_the_rest_cancel(stack: Stack) -> None:
    # Given a long run watched over a WebSocket
    run_id = start_demo_run(stack, 400)

    async def watch_and_cancel() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        events, replies = [], []
        async with connect(ws_url(stack, run_id), additional_headers=_bearer(stack)) as ws:
            async for raw in ws:
                message = json.loads(raw)
                if "seq" in message:
                    events.append(message)
                    if message["type"] == "message.delta" and len(events) == 10:
                        await ws.send(json.dumps({"type": "cancel"}))
                elif message["type"] != "ping":
                    replies.append(message)
            return events, replies, ws.close_code or 0

    # When the viewer sends {"type": "cancel"}
    events, replies, code = asyncio.run(watch_and_cancel())
    # Then the cancel is accepted, the stream ends with run.cancelled, and closes normally
    assert {"type": "cancel.accepted", "status": "cancelling"} in replies
    assert events[-1]["type"] == "run.cancelled"
    assert_exactly_once(events, run_id)
    assert code == 1000

    # And a cancel of a finished run is refused as by REST (409 run_finished)
    async def cancel_finished() -> dict[str, Any]:
        async with connect(
            ws_url(stack, run_id, len(events) - 1), additional_headers=_bearer(stack)
        ) as ws:
            await ws.recv()
            try:
                await ws.send(json.dumps({"type": "cancel"}))
                return json.loads(await ws.recv())
            except ConnectionClosed:
                return {}

    answer = asyncio.run(cancel_finished())
    assert answer in ({}, {"type": "error", "error": answer.get("error")})


def _bearer(stack: Stack, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or stack.token}"}


def test_an_idle_stream_gets_keepalives_and_a_late_start_still_arrives(stack: Stack) -> None:
    # Given a run that stays queued (its emitter waits), watched over WebSocket and SSE
    run = SyntheticRun(stack, "--events", "30", "--rate", "300")
    try:

        async def watch() -> Any:
            return await read_stream(ws_url(stack, run.run_id), token=stack.token, timeout=60)

        async def scenario() -> Any:
            viewer = asyncio.ensure_future(watch())
            await asyncio.sleep(2.5)  # WS_PING_INTERVAL_S is 1 in the e2e stacks
            run.go()
            return await viewer

        result = asyncio.run(scenario())
        # Then pings arrived while idle, and every event after the late start too. In the
        # embedded stack the emitter's doorbell rings in another process (its in-memory
        # layer), so this also proves that the log alone brings the events.
        assert result.pings >= 2
        assert_exactly_once(result.events, run.run_id)
        run.wait()
        _, _, comments = read_sse(stack, run.run_id, after=0)
        assert comments == []  # a finished replay needs no keepalive
    finally:
        run.kill()


def test_a_lossy_doorbell_loses_no_event(distributed_stack: Stack) -> None:
    # Given an emitter that publishes no third batch (stored, never announced)
    stack = distributed_stack
    run = SyntheticRun(stack, "--events", "300", "--rate", "600", "--drop-every", "3")
    try:

        async def scenario() -> list[Any]:
            viewers = [
                asyncio.ensure_future(read_stream(ws_url(stack, run.run_id), token=stack.token))
                for _ in range(5)
            ]
            await asyncio.sleep(0.5)
            run.go()
            return await asyncio.gather(*viewers)

        results = asyncio.run(scenario())
        # Then every viewer still gets every event once, in order
        for result in results:
            assert_exactly_once(result.events, run.run_id)
            assert len(result.events) == 300 + 5
        run.wait()
    finally:
        run.kill()


def test_a_client_that_stops_reading_is_closed_as_too_slow_and_can_resume(
    distributed_stack: Stack,
) -> None:
    stack = distributed_stack
    daphne_pid = stack.procs[0].pid
    dropped_before = metric(
        stack, "switchyard_stream_clients_dropped_total", 'reason="too_slow",transport="websocket"'
    )
    # Given a run that will stream ~4 MB, a normal viewer, and a viewer that stops reading
    run = SyntheticRun(stack, "--events", "20000", "--delta-chars", "40", "--rate", "4000")
    try:

        async def scenario() -> tuple[Any, list[dict[str, Any]], int | None, int]:
            normal = asyncio.ensure_future(
                read_stream(ws_url(stack, run.run_id), token=stack.token, timeout=120)
            )
            sock = small_buffer_socket(stack)
            slow = await connect(
                ws_url(stack, run.run_id),
                additional_headers=_bearer(stack),
                sock=sock,
                max_queue=1,
                max_size=None,
                # It reads nothing, so it could not see a pong either: its own keepalive
                # would give up (1011/1006) before the server's 4408 under a loaded machine.
                ping_interval=None,
            )
            await asyncio.sleep(0.5)
            rss_before = rss_kib(daphne_pid)
            run.go()
            # When the slow viewer reads nothing while the run streams
            await asyncio.sleep(3)
            rss_peak = rss_kib(daphne_pid)
            normal_result = await normal
            await asyncio.sleep(1)
            rss_peak = max(rss_peak, rss_kib(daphne_pid))
            # Then it finds what was buffered and a 4408 close once it reads again
            seen: list[dict[str, Any]] = []
            with contextlib.suppress(ConnectionClosed):
                async for raw in slow:
                    message = json.loads(raw)
                    if "seq" in message:
                        seen.append(message)
            return normal_result, seen, slow.close_code, rss_peak - rss_before

        normal, seen, code, rss_growth_kib = asyncio.run(scenario())
        assert code == 4408
        # And the other viewer was unaffected
        assert_exactly_once(normal.events, run.run_id)
        assert len(normal.events) == 20005
        # And the server did not buffer the stream for it: ~4 MB went out meanwhile
        assert rss_growth_kib < 16 * 1024, rss_growth_kib
        assert (
            metric(
                stack,
                "switchyard_stream_clients_dropped_total",
                'reason="too_slow",transport="websocket"',
            )
            >= dropped_before + 1
        )
        # And resuming with after = the last seq it got completes the stream exactly
        assert seen and seen[-1]["seq"] < 20005
        rest = asyncio.run(
            read_stream(ws_url(stack, run.run_id, seen[-1]["seq"]), token=stack.token, timeout=60)
        )
        assert_exactly_once(seen + rest.events, run.run_id)
        run.wait()
    finally:
        run.kill()


def test_open_connections_and_sent_events_are_counted(stack: Stack) -> None:
    run_id = start_demo_run(stack, 40)
    sent_before = metric(stack, "switchyard_stream_events_sent_total", 'transport="websocket"')

    async def scenario() -> float:
        async with connect(ws_url(stack, run_id), additional_headers=_bearer(stack)) as ws:
            await ws.recv()
            wait_for = time.monotonic() + 5
            while time.monotonic() < wait_for:
                value = metric(stack, "switchyard_websocket_connections")
                if value >= 1:
                    return value
                await asyncio.sleep(0.05)
            return 0.0

    assert asyncio.run(scenario()) >= 1
    wait_until(
        lambda: (
            metric(stack, "switchyard_stream_events_sent_total", 'transport="websocket"')
            > sent_before
        )
    )
    assert metric(stack, "switchyard_stream_events_replayed_total", 'transport="websocket"') > 0


def test_a_client_that_closes_mid_stream_gets_the_close_handshake(stack: Stack) -> None:
    # Given a live stream
    run_id = start_demo_run(stack, 200)

    async def scenario() -> tuple[int | None, bool, float]:
        async with connect(ws_url(stack, run_id), additional_headers=_bearer(stack)) as ws:
            seen = 0
            while seen < 5:
                if "seq" in json.loads(await ws.recv()):
                    seen += 1
            # When the client closes while events are still being sent
            started = time.monotonic()
            await ws.close()
            return ws.close_code, ws.protocol.close_rcvd is not None, time.monotonic() - started

    code, answered, took_s = asyncio.run(scenario())
    # Then the server answers with its own close frame (not a dropped TCP connection,
    # which clients report as 1006 after waiting out their close timeout)
    assert answered, (code, took_s)
    assert code == 1000
