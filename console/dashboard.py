"""The admin index as a dashboard: runs, latency, spend, budgets, flags, stuck runs, health.

Every number comes from a selector (the usage API's ``usage_summarize`` for spend and runs
per agent, ``usage_spend_daily_list`` for the same ledger rows per agent, model and day);
each block shows only with the permission it needs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from agents.selectors import (
    agent_budget_use_list,
    run_stats,
    run_stuck_list,
    usage_spend_daily_list,
    usage_summarize,
)
from agents.services import month_start
from core.display import budget_row
from monitoring.health import readiness

WINDOWS: dict[str, tuple[str, timedelta]] = {
    "24h": ("24 h", timedelta(hours=24)),
    "7d": ("7 d", timedelta(days=7)),
    "30d": ("30 d", timedelta(days=30)),
}
DEFAULT_WINDOW = "24h"
# Distinct series colours for the spend charts (agents or models), cycled.
PALETTE = ["#7c3aed", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#6366f1", "#ec4899", "#84cc16"]
TOP_SERIES = 8


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """unfold's DASHBOARD_CALLBACK: the index page's context."""
    context.update(dashboard_context(request))
    return context


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    key = request.GET.get("window", DEFAULT_WINDOW)
    if key not in WINDOWS:
        key = DEFAULT_WINDOW
    end = timezone.now()
    start = end - WINDOWS[key][1]
    context: dict[str, Any] = {
        "dashboard": True,
        "windows": [(k, label, k == key) for k, (label, _) in WINDOWS.items()],
        "window_label": WINDOWS[key][0],
        "health": readiness()[1],
    }
    if user.has_perm("agents.view_run"):
        context["stats"] = run_stats(start=start, end=end)
        stuck = run_stuck_list(now=end, stale_after_s=settings.RUN_STALE_AFTER_S)
        context["stuck"] = [stuck_row(run, end) for run in stuck]
        context.update(spend_context(user, start, end))
    if user.has_perm("agents.view_agent"):
        context["budgets"] = [budget_row(row) for row in agent_budget_use_list(since=month_start())]
    return context


def stuck_row(run: Any, now: Any) -> dict[str, Any]:
    waiting = run.status == "queued"
    since = run.created_at if waiting else (run.heartbeat_at or run.started_at or run.created_at)
    return {
        "run": run,
        "reason": "waiting" if waiting else "stale heartbeat",
        "age_s": round((now - since).total_seconds()),
    }


def _days(start: Any, end: Any) -> list[date]:
    first, last = start.date(), end.date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def spend_context(user: Any, start: Any, end: Any) -> dict[str, Any]:
    """Per agent: runs and success rate (``usage_summarize`` by agent, without per-group
    percentiles: the page shows them once, from ``run_stats``), tokens and spend; per day:
    spend by agent and by model, as chart data. The ledger is read once, per agent, model
    and day (``usage_spend_daily_list``), and summed here per agent."""
    runs = usage_summarize(
        user=user, group_by=["agent"], start=start, end=end, percentiles=False, ledger=False
    )
    agents = {row["agent"]: agent_row(row) for row in runs}
    by_agent_day: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    by_model_day: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in usage_spend_daily_list(user=user, start=start, end=end):
        agent = agents.setdefault(row["agent"], agent_row({"agent": row["agent"]}))
        agent["cost"] += row["cost_usd"]
        agent["tokens"] += row["input_tokens"] + row["output_tokens"]
        by_agent_day[row["agent"]][row["day"]] += row["cost_usd"]
        by_model_day[row["model"] or "?"][row["day"]] += row["cost_usd"]
    days = _days(start, end)
    return {
        "agents_table": sorted(agents.values(), key=lambda a: -a["cost"]),
        "total_cost": sum((a["cost"] for a in agents.values()), Decimal(0)),
        "spend_by_agent_chart": chart(days, by_agent_day),
        "spend_by_model_chart": chart(days, by_model_day),
    }


def agent_row(row: dict[str, Any]) -> dict[str, Any]:
    """One line of the agents table from a ``usage_summarize`` group's run counts (no runs:
    an agent with ledger rows only); tokens and cost are added from the ledger."""
    runs = row.get("runs") or {"total": 0, "succeeded": 0}
    failed = sum(runs.get(s, 0) for s in ("failed", "timed_out", "blocked"))
    finished = runs["succeeded"] + failed
    return {
        "agent": row["agent"],
        "runs": runs["total"],
        "succeeded": runs["succeeded"],
        "failed": failed,
        "cost": Decimal(0),
        "tokens": 0,
        "success_rate": runs["succeeded"] / finished if finished else None,
    }


def chart(days: list[date], series: dict[str, dict[date, Decimal]]) -> str:
    """Chart.js bar data (unfold's chart component reads it from a data attribute)."""
    ranked = sorted(series, key=lambda name: -sum(series[name].values()))[:TOP_SERIES]
    return json.dumps(
        {
            "labels": [d.isoformat() for d in days],
            "datasets": [
                {
                    "label": name,
                    "data": [float(series[name].get(d, 0)) for d in days],
                    "backgroundColor": PALETTE[i % len(PALETTE)],
                    "stack": "spend",
                }
                for i, name in enumerate(ranked)
            ],
        }
    )
