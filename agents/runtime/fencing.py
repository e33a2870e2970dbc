"""Fencing: an attempt at a run writes and calls the provider only while it owns the run.

A run is owned by the attempt that moved it ``queued -> running`` (``Run.attempt`` is
incremented by that claim). When the reaper re-queues a run whose heartbeat looked stale,
the attempt that was executing it may still be alive (a stalled loop, a paused process):
it must notice before its next provider call and before its next write, or the provider
is asked (and bills) twice and two writers number the same events. Every write of an
executor therefore locks the run's row *if* its attempt still owns it, and writes only
then; every provider call is preceded by the same check.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q

from agents.lifecycle import ACTIVE
from agents.models import Run, RunEvent


class ClaimLost(Exception):
    """This attempt no longer owns its run (re-queued, or claimed by another attempt); it
    must stop without calling the provider or writing anything more."""


Attempt = tuple[uuid.UUID, int]  # a run and the attempt that executes it


def owned_by(attempts: Iterable[Attempt]) -> Q:
    """Rows of these runs under the given attempts (grouped: most runs are attempt 1)."""
    by_attempt: dict[int, list[uuid.UUID]] = defaultdict(list)
    for run_id, attempt in attempts:
        by_attempt[attempt].append(run_id)
    q = Q(pk__in=[])
    for attempt, ids in by_attempt.items():
        q |= Q(attempt=attempt, pk__in=ids)
    return q


def _owned(run_id: uuid.UUID, attempt: int) -> Any:
    return Run.objects.filter(pk=run_id, attempt=attempt, status__in=ACTIVE)


def holds_claim(run_id: uuid.UUID, attempt: int) -> bool:
    """The fence before a provider call: does this attempt still own the run?"""
    return bool(_owned(run_id, attempt).exists())


def lock_claim(run_id: uuid.UUID, attempt: int) -> bool:
    """The fence before a write, inside the writer's transaction: lock the run's row if
    this attempt still owns it, so that no re-queue or new claim slips in before the
    transaction commits. NO KEY UPDATE holds off status writers but not event inserts
    (their foreign key check only takes KEY SHARE)."""
    locked = _owned(run_id, attempt).select_for_update(no_key=True).values_list("pk")
    return locked.first() is not None


def store_events(run_id: uuid.UUID, attempt: int | None, events: list[RunEvent]) -> bool:
    """Insert a run's events, fenced by its attempt (None: a writer that is not an
    executor, no fence). False, with nothing stored, when the attempt lost its claim."""
    with transaction.atomic():
        if attempt is not None and not lock_claim(run_id, attempt):
            return False
        RunEvent.objects.bulk_create(events)
    return True


def store_batches(batches: list[tuple[uuid.UUID, int | None, list[RunEvent]]]) -> set[Attempt]:
    """Insert the events of many runs in one transaction: one fencing query for every
    attempt among them, one bulk insert. Returns the attempts that lost their claim;
    nothing of theirs is stored. Rows are locked in primary-key order, so two such
    writers (or this and the heartbeat's UPDATE) take their locks in the same order."""
    pairs = {(run_id, attempt) for run_id, attempt, _ in batches if attempt is not None}
    with transaction.atomic():
        owned: set[Attempt] = set()
        if pairs:
            locked = (
                Run.objects.filter(owned_by(pairs), status__in=ACTIVE)
                .select_for_update(no_key=True)
                .order_by("pk")
                .values_list("pk", "attempt")
            )
            owned = set(locked)
        lost = pairs - owned
        RunEvent.objects.bulk_create(
            [
                event
                for run_id, attempt, events in batches
                if attempt is None or (run_id, attempt) in owned
                for event in events
            ],
            batch_size=5000,
        )
    return lost
