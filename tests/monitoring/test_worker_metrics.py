"""The worker's metrics endpoint: off by default, and a busy port never stops the worker."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from django.test import override_settings

from monitoring.worker import serve_worker_metrics


def test_it_is_off_without_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr("monitoring.worker.start_http_server", lambda *a, **k: started.append(a))
    with override_settings(WORKER_METRICS_PORT=0):
        serve_worker_metrics()
    assert started == []


def test_a_busy_port_is_logged_and_the_worker_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with override_settings(WORKER_METRICS_PORT=port, WORKER_METRICS_ADDR="127.0.0.1"):
            serve_worker_metrics()  # does not raise
    assert any("worker_metrics_not_served" in str(r.msg) for r in caplog.records)


def test_it_serves_the_process_registry() -> None:
    import monitoring.metrics  # noqa: F401 - the worker's runtime imports it

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with override_settings(WORKER_METRICS_PORT=port, WORKER_METRICS_ADDR="127.0.0.1"):
        serve_worker_metrics()
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "switchyard_run_events_total" in body
