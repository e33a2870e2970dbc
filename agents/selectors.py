"""Reads that are more than a one-liner, with object-level authorization built in."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Func, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate

from agents.lifecycle import RunStatus
from agents.models import Agent, AgentVersion, ModelCall, Run, RunEvent
from agents.runtime.events import Envelope, envelope_of
from core.permissions import has_perms


def runs_visible_to(user: Any, *, perm: str = "agents.view_run") -> QuerySet[Run]:
    """A user's own runs, and everyone's for holders of ``perm`` (superusers hold all).

    ``perm`` is what reaching another owner's run takes: viewing it by default, changing
    it (``agents.change_run``) to cancel it. Staff status alone grants nothing.
    """
    qs = Run.objects.select_related("agent")
    return qs if has_perms(user, perm) else qs.filter(owner=user)


def run_for_user(
    user: Any, run_id: uuid.UUID | str, *, perm: str = "agents.view_run"
) -> Run | None:
    """The run if it exists and the user may see it; None otherwise (callers answer both
    cases alike, so an outsider cannot probe which run ids exist)."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        return None
    return runs_visible_to(user, perm=perm).filter(pk=run_uuid).first()


def may_configure_agents(user: Any) -> bool:
    """Who reads an agent's whole configuration (instructions, tool config, versions) and
    sees inactive agents: holders of ``agents.view_agent`` or ``agents.change_agent``."""
    return has_perms(user, "agents.view_agent") or has_perms(user, "agents.change_agent")


def agents_visible_to(user: Any) -> QuerySet[Agent]:
    """Everyone who may run agents sees the active ones; operators see all."""
    qs = Agent.objects.select_related("provider", "moderation_policy")
    return qs if may_configure_agents(user) else qs.filter(is_active=True)


def agent_versions(agent: Agent) -> QuerySet[AgentVersion]:
    return agent.versions.select_related("created_by").order_by("-number")


def events_after(
    run_id: uuid.UUID | str, *, after: int, before: int | None = None, limit: int = 500
) -> list[Envelope]:
    """A page of a run's stored events with ``after < seq < before``, in order."""
    qs = RunEvent.objects.filter(run_id=run_id, seq__gt=after)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    return [envelope_of(e) for e in qs.order_by("seq")[:limit]]


# --- Usage ------------------------------------------------------------------------------

USAGE_GROUPS: tuple[str, ...] = ("agent", "model", "day")
USAGE_MAX_WINDOW = timedelta(days=366)
RUN_STATUSES: tuple[str, ...] = tuple(RunStatus.values)


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set ``percentile_cont(f) WITHIN GROUP (ORDER BY expr)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


class EpochSeconds(Func):
    """Seconds of an interval (PostgreSQL), so percentiles come out as plain numbers."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


def _usage_keys(group_by: Sequence[str], *, ledger: bool) -> dict[str, Any]:
    """The GROUP BY expressions of one query, by group name."""
    keys: dict[str, Any] = {}
    for name in group_by:
        if name == "agent":
            keys["g_agent"] = F("agent_id")
        elif name == "model":
            keys["g_model"] = F("model") if ledger else KeyTextTransform("model_name", "config")
        elif name == "day":
            keys["g_day"] = TruncDate("created_at", tzinfo=UTC)
    return keys


def _percentiles_in_python(runs: QuerySet[Run], keys: dict[str, Any]) -> dict[tuple, list[float]]:
    """Durations per group for databases without ``percentile_cont`` (SQLite, embedded)."""
    durations: dict[tuple, list[float]] = {}
    rows = runs.filter(started_at__isnull=False, finished_at__isnull=False).annotate(**keys)
    for row in rows.values(*keys, "started_at", "finished_at"):
        group = tuple(row[k] for k in keys)
        seconds = (row["finished_at"] - row["started_at"]).total_seconds()
        durations.setdefault(group, []).append(seconds)
    return durations


def _percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as ``percentile_cont`` does."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def usage_summary(
    *,
    user: Any,
    group_by: Sequence[str],
    start: datetime,
    end: datetime,
    agent: Agent | None = None,
) -> list[dict[str, Any]]:
    """Usage per group over ``start <= t < end``: runs by status and their p50/p95
    duration (runs by creation time), model requests, tokens and cost (ledger rows by
    their own time). Without ``agents.view_run`` only the user's own runs count.

    Two aggregate queries, one on ``Run`` and one on the ``ModelCall`` ledger, each on a
    ``created_at`` index (with the agent or the owner in front when filtered by them); the
    groups are joined here. Money stays ``Decimal``.
    """
    if any(name not in USAGE_GROUPS for name in group_by) or not group_by:
        raise ValueError(f"group_by takes {', '.join(USAGE_GROUPS)}")
    runs = Run.objects.filter(created_at__gte=start, created_at__lt=end)
    calls = ModelCall.objects.filter(created_at__gte=start, created_at__lt=end)
    if agent is not None:
        runs, calls = runs.filter(agent=agent), calls.filter(agent=agent)
    if not has_perms(user, "agents.view_run"):
        runs, calls = runs.filter(owner=user), calls.filter(run__owner=user)

    run_keys = _usage_keys(group_by, ledger=False)
    run_aggregates: dict[str, Any] = {
        f"s_{s}": Count("id", filter=Q(status=s)) for s in RUN_STATUSES
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        duration = EpochSeconds(F("finished_at") - F("started_at"))
        run_aggregates["p50"] = PercentileCont(duration, 0.5)
        run_aggregates["p95"] = PercentileCont(duration, 0.95)
    run_rows = runs.annotate(**run_keys).values(*run_keys).annotate(**run_aggregates).order_by()

    call_keys = _usage_keys(group_by, ledger=True)
    call_rows = (
        calls.annotate(**call_keys)
        .values(*call_keys)
        .annotate(
            requests=Count("id"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cached_tokens=Sum("cached_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by()
    )

    groups: dict[tuple, dict[str, Any]] = {}

    def group_for(row: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
        key = tuple(row[k] for k in keys)
        if key not in groups:
            groups[key] = {
                "key": key,
                "runs": {"total": 0, **{s: 0 for s in RUN_STATUSES}},
                "model_requests": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cached_tokens": 0,
                "cost_usd": Decimal(0),
                "duration_p50_s": None,
                "duration_p95_s": None,
            }
        return groups[key]

    for row in run_rows:
        group = group_for(row, run_keys)
        for s in RUN_STATUSES:
            group["runs"][s] = row[f"s_{s}"]
        group["runs"]["total"] = sum(row[f"s_{s}"] for s in RUN_STATUSES)
        if postgres:
            group["duration_p50_s"], group["duration_p95_s"] = row["p50"], row["p95"]
    if not postgres:
        for key, values in _percentiles_in_python(runs, run_keys).items():
            group = group_for(dict(zip(run_keys, key, strict=True)), run_keys)
            group["duration_p50_s"] = _percentile(values, 0.5)
            group["duration_p95_s"] = _percentile(values, 0.95)
    for row in call_rows:
        group = group_for(row, call_keys)
        group["model_requests"] = row["requests"]
        for name in ("input_tokens", "output_tokens", "cached_tokens"):
            group[name] = row[name] or 0
        group["cost_usd"] = row["cost"] or Decimal(0)

    slugs: dict[int, str] = {}
    if "agent" in group_by:
        ids = {g["key"][list(group_by).index("agent")] for g in groups.values()}
        slugs = dict(Agent.objects.filter(pk__in=ids).values_list("pk", "slug"))
    result = []
    for group in groups.values():
        named = dict(zip(group_by, group.pop("key"), strict=True))
        if "agent" in named:
            named["agent"] = slugs.get(named["agent"], str(named["agent"]))
        for name in ("duration_p50_s", "duration_p95_s"):
            if group[name] is not None:
                group[name] = round(float(group[name]), 3)
        result.append({**named, **group})
    result.sort(key=lambda g: tuple(str(g[name]) for name in group_by))
    return result
