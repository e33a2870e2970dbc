"""Reads that are more than a one-liner, with object-level authorization built in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Func, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate

from agents.lifecycle import ACTIVE, TERMINAL, UNFINISHED, RunStatus
from agents.models import Agent, AgentVersion, ModelCall, Run, RunEvent, Thread
from agents.runtime.events import Envelope, envelope_of
from core.permissions import has_perms


def run_list(user: Any, *, perm: str = "agents.view_run") -> QuerySet[Run]:
    """A user's own runs, and everyone's for holders of ``perm`` (superusers hold all).

    ``perm`` is what reaching another owner's run takes: viewing it by default, changing
    it (``agents.change_run``) to cancel it. Staff status alone grants nothing.
    """
    qs = Run.objects.select_related("agent")
    return qs if has_perms(user, perm) else qs.filter(owner=user)


def run_get(user: Any, run_id: uuid.UUID | str, *, perm: str = "agents.view_run") -> Run | None:
    """The run if it exists and the user may see it; None otherwise (callers answer both
    cases alike, so an outsider cannot probe which run ids exist)."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        return None
    return run_list(user, perm=perm).filter(pk=run_uuid).first()


def agent_may_configure(user: Any) -> bool:
    """Who reads an agent's whole configuration (instructions, tool config, versions) and
    sees inactive agents: holders of ``agents.view_agent`` or ``agents.change_agent``."""
    return has_perms(user, "agents.view_agent") or has_perms(user, "agents.change_agent")


def agent_list(user: Any) -> QuerySet[Agent]:
    """Everyone who may run agents sees the active ones; operators see all."""
    qs = Agent.objects.select_related("provider", "moderation_policy")
    return qs if agent_may_configure(user) else qs.filter(is_active=True)


def agent_version_list(agent: Agent) -> QuerySet[AgentVersion]:
    return agent.versions.select_related("created_by").order_by("-number")


def thread_list(user: Any) -> QuerySet[Thread]:
    """A user's own threads, and everyone's for holders of ``agents.view_thread``."""
    qs = Thread.objects.select_related("agent", "owner")
    return qs if has_perms(user, "agents.view_thread") else qs.filter(owner=user)


def thread_get(user: Any, thread_id: uuid.UUID | str, *, perm: str) -> Thread | None:
    """The thread if the user owns it or holds ``perm``; None otherwise (also for ids that
    are not UUIDs), so an outsider cannot tell which threads exist."""
    try:
        thread_uuid = uuid.UUID(str(thread_id))
    except ValueError:
        return None
    qs = Thread.objects.select_related("agent", "owner").filter(pk=thread_uuid)
    return qs.first() if has_perms(user, perm) else qs.filter(owner=user).first()


def thread_history_list(
    thread_id: uuid.UUID | str, *, before: datetime | None = None
) -> list[tuple[uuid.UUID, list[Any]]]:
    """``(run id, stored model messages)`` of the thread's succeeded runs that the next run
    (or the run created at ``before``) loads, oldest first: the newest whole runs whose
    messages fit ``THREAD_HISTORY_MAX_CHARS`` (a tool result never loses its call)."""
    qs = Run.objects.filter(thread_id=thread_id, status=RunStatus.SUCCEEDED)
    if before is not None:
        qs = qs.filter(created_at__lt=before)
    budget = settings.THREAD_HISTORY_MAX_CHARS
    kept: list[tuple[uuid.UUID, list[Any]]] = []
    used = 0
    for run_id, messages in qs.order_by("-created_at").values_list("id", "messages"):
        size = len(json.dumps(messages))
        if used + size > budget:
            break
        kept.append((run_id, messages))
        used += size
    return list(reversed(kept))


def thread_message_list(thread: Thread) -> list[dict[str, Any]]:
    """The conversation as the thread's next run will load it, one entry per message part
    that carries content: ``{"role", "content", "run"}`` (roles: system, user, assistant,
    tool; a tool call is an assistant entry with ``tool_call``)."""
    entries: list[dict[str, Any]] = []
    for run_id, messages in thread_history_list(thread.pk):
        for message in messages:
            for part in message.get("parts", []):
                entry = _message_entry(message.get("kind"), part)
                if entry is not None:
                    entries.append({**entry, "run": str(run_id)})
    return entries


def _message_entry(kind: str | None, part: dict[str, Any]) -> dict[str, Any] | None:
    part_kind = part.get("part_kind")
    if part_kind == "system-prompt":
        return {"role": "system", "content": part.get("content", "")}
    if part_kind == "user-prompt":
        content = part.get("content", "")
        return {"role": "user", "content": content if isinstance(content, str) else str(content)}
    if part_kind == "text":
        return {"role": "assistant", "content": part.get("content", "")}
    if part_kind == "tool-call":
        args = part.get("args")
        return {
            "role": "assistant",
            "content": "",
            "tool_call": {
                "name": part.get("tool_name", ""),
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
    if part_kind in {"tool-return", "retry-prompt"}:
        content = part.get("content", "")
        return {
            "role": "tool",
            "content": content if isinstance(content, str) else json.dumps(content, default=str),
            "tool_name": part.get("tool_name", ""),
        }
    return None


def run_event_list(
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


def _percentiles_in_python(
    runs: QuerySet[Run], keys: dict[str, Any]
) -> dict[tuple[Any, ...], list[float]]:
    """Durations per group for databases without ``percentile_cont`` (SQLite, embedded)."""
    durations: dict[tuple[Any, ...], list[float]] = {}
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


def _usage_querysets(
    *, user: Any, start: datetime, end: datetime, agent: Agent | None = None
) -> tuple[QuerySet[Run], QuerySet[ModelCall]]:
    """The runs and ledger rows of ``start <= t < end`` that ``user`` may count."""
    runs = Run.objects.filter(created_at__gte=start, created_at__lt=end)
    calls = ModelCall.objects.filter(created_at__gte=start, created_at__lt=end)
    if agent is not None:
        runs, calls = runs.filter(agent=agent), calls.filter(agent=agent)
    if not has_perms(user, "agents.view_run"):
        runs, calls = runs.filter(owner=user), calls.filter(run__owner=user)
    return runs, calls


def usage_spend_daily_list(*, user: Any, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Ledger tokens and cost per (agent slug, model, UTC day) over ``start <= t < end``, the
    same rows ``usage_summarize`` counts: one aggregate query on the ledger's ``created_at``
    index."""
    _, calls = _usage_querysets(user=user, start=start, end=end)
    keys = _usage_keys(["agent", "model", "day"], ledger=True)
    rows = list(
        calls.annotate(**keys)
        .values(*keys)
        .annotate(
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by()
    )
    slugs = dict(
        Agent.objects.filter(pk__in={r["g_agent"] for r in rows}).values_list("pk", "slug")
    )
    return [
        {
            "agent": slugs.get(r["g_agent"], str(r["g_agent"])),
            "model": r["g_model"],
            "day": r["g_day"],
            "input_tokens": r["input_tokens"] or 0,
            "output_tokens": r["output_tokens"] or 0,
            "cost_usd": r["cost"] or Decimal(0),
        }
        for r in rows
    ]


def usage_summarize(
    *,
    user: Any,
    group_by: Sequence[str],
    start: datetime,
    end: datetime,
    agent: Agent | None = None,
    percentiles: bool = True,
    ledger: bool = True,
) -> list[dict[str, Any]]:
    """Usage per group over ``start <= t < end``: runs by status and their p50/p95
    duration (runs by creation time), model requests, tokens and cost (ledger rows by
    their own time). Without ``agents.view_run`` only the user's own runs count.
    ``percentiles=False`` leaves the durations ``None`` and ``ledger=False`` the requests,
    tokens and cost 0 (the dashboard takes percentiles once for the window from
    ``run_stats`` and the ledger per day from ``usage_spend_daily_list``).

    Two aggregate queries, one on ``Run`` and one on the ``ModelCall`` ledger, each on a
    ``created_at`` index (with the agent or the owner in front when filtered by them); the
    groups are joined here. Money stays ``Decimal``.
    """
    if any(name not in USAGE_GROUPS for name in group_by) or not group_by:
        raise ValueError(f"group_by takes {', '.join(USAGE_GROUPS)}")
    runs, calls = _usage_querysets(user=user, start=start, end=end, agent=agent)

    run_keys = _usage_keys(group_by, ledger=False)
    run_aggregates: dict[str, Any] = {
        f"s_{s}": Count("id", filter=Q(status=s)) for s in RUN_STATUSES
    }
    in_sql = percentiles and connection.vendor == "postgresql"
    if in_sql:
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

    groups: dict[tuple[Any, ...], dict[str, Any]] = {}

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
        if in_sql:
            group["duration_p50_s"], group["duration_p95_s"] = row["p50"], row["p95"]
    if percentiles and not in_sql:
        for key, values in _percentiles_in_python(runs, run_keys).items():
            group = group_for(dict(zip(run_keys, key, strict=True)), run_keys)
            group["duration_p50_s"] = _percentile(values, 0.5)
            group["duration_p95_s"] = _percentile(values, 0.95)
    for row in call_rows if ledger else []:
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


# --- Run state and budgets (the dashboard and the run-state gauges) -------------------


def run_stats(*, start: datetime, end: datetime, agent: Agent | None = None) -> dict[str, Any]:
    """Runs created in ``start <= t < end`` (of one agent, if given): counts by status, the
    success rate among finished runs, and p50/p95 of duration and of queue wait (created ->
    started), in seconds. One aggregate query (counts and percentiles in a single scan) on
    the ``created_at`` index."""
    runs = Run.objects.filter(created_at__gte=start, created_at__lt=end)
    if agent is not None:
        runs = runs.filter(agent=agent)
    counts: dict[str, Any] = {f"s_{s}": Count("id", filter=Q(status=s)) for s in RUN_STATUSES}
    duration = (F("finished_at") - F("started_at"), "started_at", "finished_at")
    wait = (F("started_at") - F("created_at"), "created_at", "started_at")
    if connection.vendor == "postgresql":
        row = runs.aggregate(
            **counts,
            duration_p50=PercentileCont(EpochSeconds(duration[0]), 0.5),
            duration_p95=PercentileCont(EpochSeconds(duration[0]), 0.95),
            wait_p50=PercentileCont(EpochSeconds(wait[0]), 0.5),
            wait_p95=PercentileCont(EpochSeconds(wait[0]), 0.95),
        )
    else:
        row = runs.aggregate(**counts)
        for name, (_, first, last) in (("duration", duration), ("wait", wait)):
            pairs = runs.filter(**{f"{first}__isnull": False, f"{last}__isnull": False})
            values = [(b - a).total_seconds() for a, b in pairs.values_list(first, last)]
            row[f"{name}_p50"], row[f"{name}_p95"] = (
                _percentile(values, 0.5),
                _percentile(values, 0.95),
            )
    by_status = {s: row.pop(f"s_{s}") for s in RUN_STATUSES}
    finished = sum(by_status[s] for s in TERMINAL)
    stats: dict[str, Any] = {
        "runs": {"total": sum(by_status.values()), **by_status},
        "success_rate": by_status[RunStatus.SUCCEEDED] / finished if finished else None,
    }
    for name, value in row.items():
        stats[f"{name}_s"] = round(float(value), 3) if value is not None else None
    return stats


def run_unfinished_stats(*, now: datetime, stale_after_s: float) -> dict[str, Any]:
    """Unfinished runs by status, how many active ones have a stale heartbeat, and the
    oldest queued run's creation time; one query on the partial index of unfinished runs."""
    cutoff = now - timedelta(seconds=stale_after_s)
    rows = (
        Run.objects.filter(status__in=UNFINISHED)
        .values("status")
        .annotate(
            n=Count("pk"),
            oldest=Min("created_at"),
            stale=Count("pk", filter=Q(heartbeat_at__lt=cutoff)),
        )
        .order_by()
    )
    by_status: dict[str, dict[str, Any]] = {row["status"]: dict(row) for row in rows}
    return {
        "by_status": {s: by_status.get(s, {}).get("n", 0) for s in UNFINISHED},
        "stale": sum(by_status.get(s, {}).get("stale", 0) for s in ACTIVE),
        "oldest_queued_at": by_status.get(RunStatus.QUEUED, {}).get("oldest"),
    }


def run_stuck_list(*, now: datetime, stale_after_s: float, limit: int = 10) -> list[Run]:
    """Active runs with a stale heartbeat, then the longest-waiting queued runs."""
    cutoff = now - timedelta(seconds=stale_after_s)
    unfinished = Run.objects.filter(status__in=UNFINISHED).select_related("agent")
    stuck = list(unfinished.filter(status__in=ACTIVE, heartbeat_at__lt=cutoff)[:limit])
    waiting = unfinished.filter(status=RunStatus.QUEUED).order_by("created_at")
    return stuck + list(waiting[: max(limit - len(stuck), 0)])


def agent_budget_use_list(*, since: datetime) -> list[dict[str, Any]]:
    """Each agent with a monthly budget: what it spent since ``since`` (the month start)
    and the share of the budget that is, on the ledger's (agent, created_at) index."""
    budgets = list(
        Agent.objects.filter(monthly_budget_usd__gt=0)
        .order_by("slug")
        .values_list("pk", "slug", "monthly_budget_usd")
    )
    spent = dict(
        ModelCall.objects.filter(agent_id__in=[pk for pk, _, _ in budgets], created_at__gte=since)
        .values("agent_id")
        .annotate(total=Sum("cost_usd"))
        .order_by()
        .values_list("agent_id", "total")
    )
    result = []
    for pk, slug, budget in budgets:
        used = spent.get(pk) or Decimal(0)
        result.append(
            {
                "agent_id": pk,
                "agent": slug,
                "budget_usd": budget,
                "spent_usd": used,
                "ratio": float(used / budget) if budget else 0.0,  # the query keeps budgets > 0
            }
        )
    return result
