"""Reads for the triage queue, shared by the admin and the REST API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from moderation.models import Flag

AGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
AGE_CHOICES = (*AGES, "older")


def flag_queue(qs: QuerySet[Flag] | None = None) -> QuerySet[Flag]:
    """Open flags first, newest first within each group."""
    qs = Flag.objects.all() if qs is None else qs
    return qs.annotate(
        open_rank=Case(
            When(status=Flag.Status.OPEN, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
    ).order_by("open_rank", "-created_at", "-pk")


def flag_age_filter(age: str) -> Q:
    """Flags created within the last hour/day/week, or ``older`` than a week."""
    now = timezone.now()
    if age == "older":
        return Q(created_at__lt=now - AGES["week"])
    return Q(created_at__gte=now - AGES[age])


def flag_list(
    *,
    agent: str | None = None,
    rule: int | None = None,
    kind: str | None = None,
    stage: str | None = None,
    severity: str | None = None,
    status: str | None = None,
    age: str | None = None,
    run: Any = None,
) -> QuerySet[Flag]:
    """The triage queue narrowed by the filters that are set (``agent`` is a slug)."""
    qs = Flag.objects.select_related("agent", "reviewer")
    if agent:
        qs = qs.filter(agent__slug=agent)
    if rule is not None:
        qs = qs.filter(rule_id=rule)
    if run is not None:
        qs = qs.filter(run_id=run)
    for name, value in (("kind", kind), ("stage", stage), ("severity", severity)):
        if value:
            qs = qs.filter(**{name: value})
    if status:
        qs = qs.filter(status=status)
    if age:
        qs = qs.filter(flag_age_filter(age))
    return flag_queue(qs)


def flag_open_count() -> dict[str, int]:
    """Open flags in total and per severity, for the admin index."""
    counts = Flag.objects.filter(status=Flag.Status.OPEN).aggregate(
        total=Count("pk"),
        high=Count("pk", filter=Q(severity="high")),
        medium=Count("pk", filter=Q(severity="medium")),
        low=Count("pk", filter=Q(severity="low")),
    )
    return {k: v or 0 for k, v in counts.items()}
