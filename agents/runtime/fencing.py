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
from typing import Any

from django.db import transaction

from agents.lifecycle import ACTIVE
from agents.models import Run, RunEvent


class ClaimLost(Exception):
    """This attempt no longer owns its run (re-queued, or claimed by another attempt); it
    must stop without calling the provider or writing anything more."""


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
