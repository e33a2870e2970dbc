"""Fair dispatch between owners: a run message is a ticket to start one queued run
(agents/runtime/claims.py, FAIREST_QUEUED_RUN), on the real PostgreSQL.

The runs are created without a hand-over and the tickets redeemed by calling claim() as
a worker's admission does; the e2e test in tests/e2e/test_fairness_e2e.py and the
benchmark tests/perf/bench_fairness.py play it through a real worker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from agents.lifecycle import RunStatus
from agents.models import Run
from agents.runtime import claims
from agents.services import run_create
from tests.conftest import require_service

pytestmark = pytest.mark.django_db(transaction=True)  # claim() manages its connection

Queue = Callable[[Any, int], list[uuid.UUID]]


@pytest.fixture
def queue(demo_agent: Any) -> Queue:
    def create(owner: Any, count: int, agent: Any = None) -> list[uuid.UUID]:
        return [
            run_create(agent=agent or demo_agent, owner=owner, input=f"q{i}", enqueue=False)[0].pk
            for i in range(count)
        ]

    return create  # type: ignore[return-value]


def started(run_id: uuid.UUID) -> uuid.UUID | None:
    """Redeem the ticket naming ``run_id``: the run it started, if any."""
    claimed = claims.claim(run_id)
    return None if claimed is None else claimed[0].pk


def status(run_id: uuid.UUID) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=run_id)


def test_a_ticket_starts_its_own_run_when_its_owner_is_alone(alice: Any, queue: Queue) -> None:
    ids = queue(alice, 3)
    assert started(ids[1]) == ids[1]  # not the oldest: the one it names


def test_behind_a_flood_another_owners_run_starts_with_the_next_ticket(
    alice: Any, charlie: Any, queue: Queue
) -> None:
    # Given alice's flood, five of her runs running and the rest queued
    flood = queue(alice, 10)
    for run_id in flood[:5]:
        assert started(run_id) == run_id
    # When charlie's run is queued behind it and the next of alice's tickets comes up
    (theirs,) = queue(charlie, 1)
    # Then it starts charlie's run, and alice's named run waits for a later ticket
    assert started(flood[5]) == theirs
    assert status(flood[5]) == RunStatus.QUEUED
    # and once charlie has as many in flight as... fewer than alice, alice's tickets
    # start alice's runs again
    assert started(flood[6]) == flood[6]


def test_the_fairest_owner_starts_its_oldest_queued_run(
    alice: Any, charlie: Any, queue: Queue
) -> None:
    mine = queue(alice, 3)
    assert started(mine[0]) == mine[0]
    theirs = queue(charlie, 3)
    assert started(mine[1]) == theirs[0]


def test_equal_loads_keep_the_named_run(alice: Any, charlie: Any, queue: Queue) -> None:
    # charlie's queued runs are older, but alice has no more in flight than charlie
    theirs = queue(charlie, 2)
    mine = queue(alice, 2)
    assert started(theirs[0]) == theirs[0]
    assert started(mine[0]) == mine[0]
    assert started(mine[1]) == mine[1]  # 1 vs 1 in flight: the named run


def test_among_equally_loaded_owners_the_one_waiting_longest_goes_first(
    alice: Any, bob: Any, charlie: Any, queue: Queue
) -> None:
    mine = queue(alice, 2)
    assert started(mine[0]) == mine[0]
    (bobs,) = queue(bob, 1)
    (charlies,) = queue(charlie, 1)
    assert started(mine[1]) == bobs  # bob and charlie have none in flight; bob's is older


def test_a_redelivered_ticket_never_starts_a_second_copy(
    alice: Any, charlie: Any, queue: Queue
) -> None:
    mine = queue(alice, 2)
    assert started(mine[0]) == mine[0]
    # the same message again: the run is running, so the ticket starts the fairest other
    assert started(mine[0]) == mine[1]
    assert Run.objects.get(pk=mine[0]).attempt == 1
    assert started(mine[0]) is None  # nothing queued: nothing starts
    assert Run.objects.filter(status=RunStatus.RUNNING).count() == 2


def test_tickets_and_queued_runs_stay_balanced(alice: Any, charlie: Any, queue: Queue) -> None:
    # Every message redeemed once, in broker order (alice's flood first): each queued run
    # starts exactly once, and the owners alternate as long as both have runs waiting
    tickets = queue(alice, 8) + queue(charlie, 3)
    order = [started(t) for t in tickets]
    assert None not in order
    assert sorted(map(str, order)) == sorted(map(str, tickets))
    owners = list(Run.objects.order_by("started_at").values_list("owner__username", flat=True))
    assert owners[:8].count("charlie") == 3  # not after alice's eight
    assert (
        status(tickets[0]) == RunStatus.RUNNING
        and not Run.objects.filter(status=RunStatus.QUEUED).exists()
    )


def test_runs_of_a_concurrency_limited_agent_keep_their_own_rule(
    alice: Any, charlie: Any, queue: Queue, demo_agent: Any, demo_provider: Any
) -> None:
    from agents.models import Agent

    limited = Agent.objects.create(
        slug="one-at-a-time",
        name="One at a time",
        provider=demo_provider,
        model_name="demo",
        max_concurrent_runs=1,
    )
    mine = queue(alice, 2)
    assert started(mine[0]) == mine[0]
    theirs = queue(charlie, 2, limited)
    # a ticket of an unlimited run never starts a limited agent's run, though charlie is
    # the fairer owner: that agent's runs start through its own tickets, one at a time
    assert started(mine[1]) == mine[1]
    assert started(theirs[1]) == theirs[0]  # the agent's oldest, as before
    assert started(theirs[1]) is None  # at its limit
    assert started(theirs[0]) is None  # a redelivered limited ticket starts nothing


def test_concurrent_tickets_lock_different_runs(alice: Any, queue: Queue) -> None:
    needs_row_locks()
    ids = queue(alice, 3)
    picked: list[uuid.UUID | None] = []
    with transaction.atomic():
        held = claims.fairest_queued_run(ids[0], alice.pk)  # locked until this commits

        def other_worker() -> None:
            with transaction.atomic():
                picked.append(claims.fairest_queued_run(ids[0], alice.pk))
            connection.close()

        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join(timeout=10)
    assert held == ids[0]
    assert picked == [ids[1]]  # skipped the locked row instead of waiting for it


def test_a_ticket_whose_fair_choice_another_holds_starts_another_queued_run(
    alice: Any, charlie: Any, queue: Queue
) -> None:
    needs_row_locks()
    # Given alice's flood with runs in flight, and charlie's one queued run, which two
    # tickets redeemed at once both find the fairest
    mine = queue(alice, 4)
    assert started(mine[0]) == mine[0]
    (theirs,) = queue(charlie, 1)
    picked: list[uuid.UUID | None] = []
    with transaction.atomic():
        held = claims.fairest_queued_run(mine[1], alice.pk)

        def other_worker() -> None:
            with transaction.atomic():
                picked.append(claims.fairest_queued_run(mine[2], alice.pk))
            connection.close()

        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join(timeout=10)
    # Then the second ticket is not spent for nothing: it takes a queued run of alice's
    assert held == theirs
    assert picked == [mine[1]]


def test_a_ticket_waits_for_its_run_locked_by_the_hand_over_rather_than_start_nothing(
    alice: Any, queue: Queue
) -> None:
    needs_row_locks()
    # Given the only queued run, its row locked by its hand-over (dispatched_at's UPDATE)
    (mine,) = queue(alice, 1)
    # When its message is redeemed meanwhile
    # Then the ticket waited for the lock and takes the run, instead of starting nothing
    assert redeemed_while_handed_over(mine, locked=mine, owner=alice) == mine


def test_a_ticket_whose_run_another_ticket_started_waits_for_a_run_locked_by_its_hand_over(
    alice: Any, queue: Queue
) -> None:
    needs_row_locks()
    # Given a running run (started by another ticket: one whose own run was locked by
    # its hand-over then), and the only queued run still locked by its hand-over
    first, second = queue(alice, 2)
    assert started(first) == first
    # When the ticket of `first`, whose run is already running, is redeemed meanwhile
    # Then it waited for the lock and takes `second`: no run is left without a ticket
    assert redeemed_while_handed_over(first, locked=second, owner=alice) == second


def needs_row_locks() -> None:
    """Row locks and SKIP LOCKED are PostgreSQL's (SQLite, the embedded mode, has one
    writer): outside CI a SQLite run skips these tests, in CI it fails them."""
    require_service("PostgreSQL (row locks)", connection.vendor == "postgresql")


def redeemed_while_handed_over(ticket: uuid.UUID, *, locked: uuid.UUID, owner: Any) -> Any:
    """What a ticket naming ``ticket`` picks while ``locked``'s row is held by its
    hand-over (dispatched_at's UPDATE, not yet committed)."""
    picked: list[uuid.UUID | None] = []

    def worker() -> None:
        with transaction.atomic():
            picked.append(claims.fairest_queued_run(ticket, owner.pk))
        connection.close()

    thread = threading.Thread(target=worker)
    with transaction.atomic():
        Run.objects.select_for_update().filter(pk=locked).update(dispatched_at=timezone.now())
        thread.start()
        waiting_for_lock(timeout_s=10)
    thread.join(timeout=10)
    return picked[0] if picked else None


def waiting_for_lock(timeout_s: float) -> None:
    """Until another backend of this database waits for a lock (the worker's claim)."""
    deadline = time.monotonic() + timeout_s
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the claim never waited for the row lock")
