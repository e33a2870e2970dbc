"""Prometheus metrics of a Celery worker, served over HTTP by the worker itself.

Runs execute in the worker in the distributed mode, so that is where run-side metrics
(runs finished, durations, tokens, cost, tool calls, moderation findings) are counted;
daphne's ``/metrics`` cannot see them. The worker runs the threads pool (one process), so
one registry holds all of them.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from prometheus_client import start_http_server

log = structlog.get_logger(__name__)


def serve_worker_metrics(**_: Any) -> None:
    """Start the metrics endpoint when ``WORKER_METRICS_PORT`` is set (Celery's
    ``worker_init`` signal: once, in the worker's main process)."""
    from monitoring import collectors

    collectors.unregister()  # the run-state gauges are global: the web process serves them
    port = settings.WORKER_METRICS_PORT
    if not port:
        return
    addr = settings.WORKER_METRICS_ADDR
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        # A busy port must not keep the worker from executing runs.
        log.error("worker_metrics_not_served", addr=addr, port=port, error=str(exc))
        return
    log.info("worker_metrics_served", url=f"http://{addr}:{port}/metrics")
