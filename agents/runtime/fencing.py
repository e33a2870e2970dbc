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

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, connection, transaction
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


Batch = tuple[uuid.UUID, int | None, list[RunEvent]]  # a run, its attempt, its events


def store_batches(batches: list[Batch]) -> set[tuple[uuid.UUID, int | None]]:
    """Insert the events of many runs at once: one fencing query for every attempt among
    them, one bulk insert, atomically. Returns the attempts that lost their claim;
    nothing of theirs is stored. Rows are locked in primary-key order, so two such
    writers (or this and the heartbeat's UPDATE) take their locks in the same order.

    A seq that is already taken means another writer numbers this run's events: that
    attempt has lost it too. The others of the batch are then stored one run at a time,
    so one such run cannot hold back the events of every other."""
    try:
        return set(_store(batches))
    except IntegrityError:
        if len(batches) == 1:
            return {(batches[0][0], batches[0][1])}
    lost: set[tuple[uuid.UUID, int | None]] = set()
    for batch in batches:
        with transaction.atomic():
            lost |= store_batches([batch])
    return lost


def _store(batches: list[Batch]) -> set[Attempt]:
    pairs = {(run_id, attempt) for run_id, attempt, _ in batches if attempt is not None}
    if connection.vendor == "postgresql":
        return pairs - _store_in_one_statement(batches, pairs)
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
        RunEvent.objects.bulk_create(
            [
                event
                for run_id, attempt, events in batches
                if attempt is None or (run_id, attempt) in owned
                for event in events
            ],
            batch_size=5000,
        )
    return pairs - owned


# The event writer's tick on PostgreSQL: the fence and the insert in one statement, so one
# round trip and no ORM compilation per tick (the ORM's lock query, insert and the
# transaction's BEGIN/COMMIT were 4 round trips and ~1.5 ms of Python). The CTE that
# locks is materialised once and the insert only takes rows of attempts it locked; an
# unfenced writer's rows (attempt NULL) go in as they are.
_STORE_SQL = """
WITH owned AS (
    SELECT r.id, r.attempt FROM agents_run r
    JOIN unnest(%s::uuid[], %s::int[]) AS a(id, attempt)
      ON r.id = a.id AND r.attempt = a.attempt
    WHERE r.status = ANY(%s)
    ORDER BY r.id
    FOR NO KEY UPDATE OF r
), stored AS (
    INSERT INTO agents_runevent (run_id, seq, type, data, created_at)
    SELECT e.run_id, e.seq, e.type, e.data, e.created_at
    FROM unnest(%s::uuid[], %s::int[], %s::int[], %s::text[], %s::jsonb[], %s::timestamptz[])
      AS e(run_id, attempt, seq, type, data, created_at)
    WHERE e.attempt IS NULL OR (e.run_id, e.attempt) IN (SELECT id, attempt FROM owned)
)
SELECT id, attempt FROM owned
"""


def _store_in_one_statement(batches: list[Batch], pairs: set[Attempt]) -> set[Attempt]:
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    run_ids, attempts, seqs, types, data, created = columns
    for run_id, attempt, events in batches:
        for event in events:
            run_ids.append(run_id)
            attempts.append(attempt)
            seqs.append(event.seq)
            types.append(event.type)
            data.append(json.dumps(event.data))
            created.append(event.created_at)
    fenced_ids = [run_id for run_id, _ in pairs]
    fenced_attempts = [attempt for _, attempt in pairs]
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, [fenced_ids, fenced_attempts, list(ACTIVE), *columns])
        return {(run_id, attempt) for run_id, attempt in cursor.fetchall()}
