"""Gauges read from the database when Prometheus scrapes the web process.

Counters say what happened; these say what *is*: how many runs wait or run now, whether
any has a stale heartbeat (the reaper is not running), how old the oldest queued run is
(no worker consumes), and how much of each agent's monthly budget is spent. The alert
rules in ``monitoring/prometheus/alerts.yml`` are built on them.

Three small queries per scrape, on the partial index of unfinished runs. The web process
serves them; a worker's own endpoint does not (every process would report the same
global numbers, and a worker should not query per scrape).

The queries get ``QUERY_BUDGET_S``: with the database down, the connection pool would
make a scrape wait its full checkout timeout, longer than Prometheus waits for the
scrape, and the whole scrape (every other metric too, and ``switchyard_run_state_up 0``
itself) would be lost. They run on one thread of their own; a scrape that finds the
previous read still stuck does not start another.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from agents.lifecycle import ACTIVE, UNFINISHED, RunStatus

log = structlog.get_logger(__name__)

QUERY_BUDGET_S = 2.0


class RunStateCollector(Collector):
    def __init__(self) -> None:
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "run-state-metrics")
        self._pending: concurrent.futures.Future[list[Metric]] | None = None

    def describe(self) -> Iterator[Metric]:
        # Without this, registering would call collect(), i.e. query the database at start.
        yield _up()
        yield from _run_families()
        yield _budget_family()

    def collect(self) -> Iterator[Metric]:
        up = _up()
        families = self._read()
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families

    def _read(self) -> list[Metric]:
        """The gauges, or [] when the database does not answer within the budget."""
        if self._pending is None or self._pending.done():
            self._pending = self._reader.submit(_read_gauges)
        try:
            return self._pending.result(timeout=QUERY_BUDGET_S)
        except concurrent.futures.TimeoutError:
            log.warning("run_state_metrics_timed_out", budget_s=QUERY_BUDGET_S)
        except Exception:  # a scrape must answer even with the database away
            log.warning("run_state_metrics_failed", exc_info=True)
        return []


def _read_gauges() -> list[Metric]:
    try:
        return [*_run_gauges(), _budget_gauge()]
    finally:
        connection.close()  # this thread's connection goes back to the pool


def _up() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "switchyard_run_state_up", "1 if the run-state gauges could be read from the database"
    )


def _run_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "switchyard_runs_in_status", "Runs not finished yet, by status", labels=["status"]
        ),
        GaugeMetricFamily(
            "switchyard_runs_stale",
            "Running or cancelling runs whose heartbeat is older than RUN_STALE_AFTER_S",
        ),
        GaugeMetricFamily(
            "switchyard_oldest_queued_run_age_seconds",
            "Age of the oldest queued run (0 with none queued)",
        ),
    )


def _budget_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "switchyard_agent_budget_used_ratio",
        "Share of the agent's monthly budget spent this month (UTC); 1 = all of it",
        labels=["agent"],
    )


def _run_gauges() -> list[Metric]:
    from agents.models import Run

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.RUN_STALE_AFTER_S)
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
    by_status = {row["status"]: row for row in rows}
    runs, stale, queued_age = _run_families()
    for status in UNFINISHED:
        runs.add_metric([status], by_status.get(status, {}).get("n", 0))
    stale.add_metric([], sum(by_status.get(s, {}).get("stale", 0) for s in ACTIVE))
    oldest = by_status.get(RunStatus.QUEUED, {}).get("oldest")
    queued_age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
    return [runs, stale, queued_age]


def _budget_gauge() -> Metric:
    from agents.models import Agent, ModelCall
    from agents.services import month_start

    agents = Agent.objects.filter(monthly_budget_usd__gt=0).order_by("slug")
    budgets = list(agents.values_list("pk", "slug", "monthly_budget_usd"))
    # On the (agent, created_at) index of the ledger.
    spent = dict(
        ModelCall.objects.filter(agent_id__in=[pk for pk, _, _ in budgets])
        .filter(created_at__gte=month_start())
        .values("agent_id")
        .annotate(total=Sum("cost_usd"))
        .order_by()
        .values_list("agent_id", "total")
    )
    ratio = _budget_family()
    for pk, slug, budget in budgets:
        ratio.add_metric([slug], float((spent.get(pk) or Decimal(0)) / budget))
    return ratio


_collector = RunStateCollector()
_registered = False


def register() -> None:
    """Serve the gauges from this process's registry (called once, by the app config)."""
    global _registered
    if not _registered:
        REGISTRY.register(_collector)
        _registered = True


def unregister() -> None:
    """A Celery worker's own endpoint leaves them out (see the module docstring)."""
    global _registered
    if _registered:
        REGISTRY.unregister(_collector)
        _registered = False
