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

import structlog
from django.conf import settings
from django.db import connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

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
    from agents.selectors import run_unfinished_stats

    now = timezone.now()
    state = run_unfinished_stats(now=now, stale_after_s=settings.RUN_STALE_AFTER_S)
    runs, stale, queued_age = _run_families()
    for status, n in state["by_status"].items():
        runs.add_metric([status], n)
    stale.add_metric([], state["stale"])
    oldest = state["oldest_queued_at"]
    queued_age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
    return [runs, stale, queued_age]


def _budget_gauge() -> Metric:
    from agents.selectors import agent_budget_use_list
    from agents.services import month_start

    ratio = _budget_family()
    for row in agent_budget_use_list(since=month_start()):
        ratio.add_metric([row["agent"]], row["ratio"])
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
