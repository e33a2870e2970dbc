"""Reads that are more than a one-liner, with object-level authorization built in."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from agents.models import Agent, Run, RunEvent
from agents.runtime.events import Envelope, envelope_of


def runs_visible_to(user: Any) -> QuerySet[Run]:
    """Staff see every run; everyone else only their own."""
    qs = Run.objects.select_related("agent")
    return qs if user.is_staff else qs.filter(owner=user)


def run_for_user(user: Any, run_id: uuid.UUID | str) -> Run | None:
    """The run if it exists and the user may see it; None otherwise (callers answer both
    cases alike, so an outsider cannot probe which run ids exist)."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        return None
    return runs_visible_to(user).filter(pk=run_uuid).first()


def agents_visible_to(user: Any) -> QuerySet[Agent]:
    qs = Agent.objects.select_related("provider")
    return qs if user.is_staff else qs.filter(is_active=True)


def events_after(
    run_id: uuid.UUID | str, *, after: int, before: int | None = None, limit: int = 500
) -> list[Envelope]:
    """A page of a run's stored events with ``after < seq < before``, in order."""
    qs = RunEvent.objects.filter(run_id=run_id, seq__gt=after)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    return [envelope_of(e) for e in qs.order_by("seq")[:limit]]
