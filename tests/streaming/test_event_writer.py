"""The event writer: one fenced write per tick for every run of a loop, then one layer
message per run, with coalescing bounded by STREAM_MAX_DELTA_GAP_MS.

No timing asserts: the slow store is a gate the test opens, the bound a pure function.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from agents.lifecycle import RunStatus
from agents.models import Run, RunEvent
from agents.runtime import events, fencing
from agents.runtime.events import EventEmitter, event_writer, pause_before_write

pytestmark = pytest.mark.django_db(transaction=True)

WINDOW, BOUND = 0.002, 0.1


@pytest.fixture(autouse=True)
def _close_thread_connections() -> Any:
    yield
    # sync_to_async ran the ORM in asgiref's single thread: close its connection there, or
    # the test database cannot be dropped at the end of the session.
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    connections.close_all()


@pytest.mark.parametrize(
    ("last_write_s", "expected"),
    [
        (0.0, WINDOW),  # idle: the flush window
        (0.001, WINDOW),  # a quick write: still the window
        (0.02, 0.02),  # under load: as long as the last write took (batches grow)
        (0.06, 0.04),  # the bound caps it: pause + next write = 100 ms
        (0.1, 0.0),  # a write as long as the bound: no pause at all
        (0.3, 0.0),  # longer still: never a negative pause
    ],
)
def test_the_pause_between_writes_grows_with_load_but_never_past_the_bound(
    last_write_s: float, expected: float
) -> None:
    pause = pause_before_write(last_write_s, WINDOW, BOUND)
    assert pause == pytest.approx(expected)
    if last_write_s <= BOUND:
        assert pause + last_write_s <= BOUND + 1e-9


def running_run(agent: Any, owner: Any, attempt: int = 1) -> Run:
    run = Run.objects.create(agent=agent, owner=owner, input="x", config={})
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempt=attempt)
    return run


class Recorder:
    """The writer's store calls (gated when asked) and the layer messages it sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stores: list[int] = []  # runs per store call
        self.published: list[tuple[str, list[int]]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_next = False
        real_store = fencing.store_batches

        def store(batches: list[Any]) -> Any:
            self.stores.append(len(batches))
            self.entered.set()
            if self.gate is not None:
                self.gate.wait(10)
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("database away")
            return real_store(batches)

        async def publish(run_id: Any, envelopes: list[Any]) -> None:
            self.published.append((str(run_id), [e["seq"] for e in envelopes]))

        monkeypatch.setattr(events, "store_batches", store)
        monkeypatch.setattr(events, "publish", publish)


def stored(run: Run) -> list[tuple[int, str, dict[str, Any]]]:
    return list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", "type", "data"))


@pytest.mark.asyncio
async def test_one_write_per_tick_stores_every_runs_events_and_publishes_once_per_run(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three running runs on one loop, each with an emitter
    recorder = Recorder(monkeypatch)
    runs = [await sync_to_async(running_run)(demo_agent, alice) for _ in range(3)]
    emitters = [EventEmitter(run.id, 1, attempt=1) for run in runs]
    # When each emits deltas and a tool call in the same window
    for n, emitter in enumerate(emitters):
        for i in range(5):
            emitter.emit_delta(f"r{n}t{i} ")
        emitter.emit("tool.call", {"call_id": "c", "name": "calculator", "args": {}})
    for emitter in emitters:
        await emitter.flush()
    # Then one store call carried all three runs, and each run got one layer message
    assert recorder.stores == [3]
    assert sorted(recorder.published) == sorted((str(r.id), [1, 2]) for r in runs)
    # And the deltas were coalesced into one stored event per run, in seq order
    for n, run in enumerate(runs):
        rows = await sync_to_async(stored)(run)
        assert rows == [
            (1, "message.delta", {"delta": "".join(f"r{n}t{i} " for i in range(5))}),
            (2, "tool.call", {"call_id": "c", "name": "calculator", "args": {}}),
        ]


@pytest.mark.asyncio
async def test_text_emitted_behind_a_slow_write_goes_out_with_the_next_tick_as_one_delta(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run whose first write is held up in the database
    recorder = Recorder(monkeypatch)
    recorder.gate = threading.Event()
    run = await sync_to_async(running_run)(demo_agent, alice)
    emitter = EventEmitter(run.id, 1, attempt=1)
    emitter.emit_delta("first ")
    await sync_to_async(recorder.entered.wait)(10)
    # When the provider goes on producing text meanwhile
    for i in range(20):
        emitter.emit_delta(f"t{i} ")
    # Then nothing is published before it is stored (the log is the truth)
    assert recorder.published == []
    recorder.gate.set()
    await emitter.flush()
    # And the text that waited went out in the very next write, coalesced into one event
    assert recorder.stores == [1, 1]
    assert recorder.published == [(str(run.id), [1]), (str(run.id), [2])]
    rows = await sync_to_async(stored)(run)
    assert rows[1] == (2, "message.delta", {"delta": "".join(f"t{i} " for i in range(20))})


@pytest.mark.asyncio
async def test_an_attempt_that_lost_its_claim_stores_nothing_and_the_others_go_on(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two runs in one tick, one of which was re-queued and claimed again (attempt 2)
    recorder = Recorder(monkeypatch)
    kept = await sync_to_async(running_run)(demo_agent, alice)
    taken = await sync_to_async(running_run)(demo_agent, alice, attempt=2)
    lost: list[str] = []
    ours = EventEmitter(kept.id, 1, attempt=1)
    stale = EventEmitter(taken.id, 1, attempt=1, on_lost=lambda: lost.append("lost"))
    # When both emit
    ours.emit_delta("mine")
    stale.emit_delta("not mine")
    await ours.flush()
    await stale.flush()
    # Then the stale attempt stored and published nothing, was told so, and emits no more
    assert lost == ["lost"] and stale.lost
    assert await sync_to_async(stored)(taken) == []
    stale.emit_delta("more")
    assert stale._pending == []
    # And the owner of the other run was written as usual, in the same store call
    assert recorder.stores == [2]
    assert await sync_to_async(stored)(kept) == [(1, "message.delta", {"delta": "mine"})]
    assert recorder.published == [(str(kept.id), [1])]


@pytest.mark.asyncio
async def test_a_failed_write_keeps_the_batch_and_the_next_one_stores_it_gap_free(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database that fails the first write
    recorder = Recorder(monkeypatch)
    recorder.fail_next = True
    run = await sync_to_async(running_run)(demo_agent, alice)
    emitter = EventEmitter(run.id, 1, attempt=1)
    # When events are emitted and flushed
    emitter.emit_delta("a")
    emitter.emit("tool.call", {"call_id": "c", "name": "x", "args": {}})
    await emitter.flush()
    # Then the retry stored every event once, in order, and published after storing
    rows = await sync_to_async(stored)(run)
    assert [seq for seq, _, _ in rows] == [1, 2]
    assert len(recorder.stores) == 2
    assert recorder.published == [(str(run.id), [1, 2])]
    assert event_writer().failures == 0


@pytest.mark.asyncio
async def test_the_finish_takes_pending_events_only_after_the_batch_in_flight_is_published(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a write in flight for a run
    recorder = Recorder(monkeypatch)
    recorder.gate = threading.Event()
    run = await sync_to_async(running_run)(demo_agent, alice)
    emitter = EventEmitter(run.id, 1, attempt=1)
    emitter.emit_delta("a")
    await sync_to_async(recorder.entered.wait)(10)
    emitter.emit("usage", {})
    # When the run's finish asks for the pending events
    taking = asyncio.ensure_future(emitter.take_pending())
    await asyncio.sleep(0)
    assert not taking.done()  # it waits for the batch in flight
    recorder.gate.set()
    last = await taking
    # Then it gets what came after, and the earlier batch was published before
    assert [e.seq for e in last] == [2]
    assert recorder.published == [(str(run.id), [1])]


@pytest.mark.asyncio
async def test_a_seq_taken_by_another_writer_loses_that_attempt_only(
    alice: Any, demo_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two runs in one tick, one of whose next seq another writer has already stored
    recorder = Recorder(monkeypatch)
    ok_run = await sync_to_async(running_run)(demo_agent, alice)
    clash = await sync_to_async(running_run)(demo_agent, alice)
    await RunEvent.objects.acreate(
        run=clash, seq=1, type="run.started", data={}, created_at=timezone.now()
    )
    ours, theirs = EventEmitter(ok_run.id, 1, attempt=1), EventEmitter(clash.id, 1, attempt=1)
    # When both emit in the same tick
    ours.emit_delta("fine")
    theirs.emit_delta("duplicate seq")
    await ours.flush()
    await theirs.flush()
    # Then the clashing attempt is lost (it does not number this run's events), and the
    # other run's events were stored all the same, not held back by the failed insert
    assert theirs.lost
    assert await sync_to_async(stored)(ok_run) == [(1, "message.delta", {"delta": "fine"})]
    assert recorder.published == [(str(ok_run.id), [1])]
    assert event_writer().failures == 0
