"""A real Prometheus scrapes a real stack: every dashboard query evaluates, the ones about
runs return data, and the alert rules load healthy with none firing on a healthy stack."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import require_service
from tests.e2e.conftest import Stack, free_port
from tests.e2e.test_run_stream_e2e import start_run, wait_for_status
from tests.monitoring.promql import PROMETHEUS, concrete, dashboards, panel_queries

pytestmark = pytest.mark.e2e


@pytest.fixture
def prometheus(distributed_stack: Stack, tmp_path: Path) -> Iterator[str]:
    """Debian's Prometheus, scraping daphne and the worker every second, with our rules."""
    require_service("prometheus (Debian's package)", shutil.which("prometheus") is not None)
    web = urlsplit(distributed_stack.base_url).netloc
    worker = f"127.0.0.1:{distributed_stack.env['WORKER_METRICS_PORT']}"
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    targets = {"switchyard-web": web, "switchyard-worker": worker}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not get ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def wait_for(url: str, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not (result := query(url, expr)):
        assert time.monotonic() < deadline, f"no data for {expr}"
        time.sleep(0.5)
    return result


def test_prometheus_scrapes_the_stack_and_every_dashboard_query_evaluates(
    distributed_stack: Stack, prometheus: str
) -> None:
    # Given both jobs up and a few runs through the API
    wait_for(prometheus, 'count(up{job=~"switchyard-(web|worker)"} == 1) == 2')
    # (the stack is shared with other tests: count from what it has done so far)
    succeeded = 'sum(switchyard_runs_finished_total{status="succeeded"})'
    before = query(prometheus, succeeded)
    for text in ("What is 12*7?", "What is 2+2?", "Hello there"):
        run = start_run(distributed_stack, text)
        assert wait_for_status(distributed_stack, run["id"])["status"] == "succeeded"
    done = float(before[0]["value"][1]) + 3 if before else 3
    wait_for(prometheus, f"{succeeded} >= {done}")
    time.sleep(3)  # a few more scrapes, so that rate() has points on both sides
    # When Grafana's queries are asked, with every agent selected
    results = {
        title + " / " + expr: query(prometheus, concrete(expr))
        for board in dashboards()
        for title, expr in panel_queries(board)
    }
    # Then every one evaluates, and those about runs, models, tools and HTTP have data
    answered = {key for key, result in results.items() if result}
    for metric in (
        "switchyard_runs_finished_total",
        "switchyard_runs_in_status",
        "switchyard_oldest_queued_run_age_seconds",
        "switchyard_run_duration_seconds_bucket",
        "switchyard_run_queue_wait_seconds_bucket",
        "switchyard_tokens_total",
        "switchyard_model_calls_total",
        "switchyard_tool_calls_total",
        "switchyard_run_transitions_total",
        "django_http_responses_total_by_status_view_method_total",
        "django_http_requests_latency_seconds_by_view_method_bucket",
    ):
        assert any(metric in key for key in answered), f"no panel reading {metric} has data"


def test_the_alert_rules_load_healthy_and_stay_quiet_on_a_healthy_stack(
    distributed_stack: Stack, prometheus: str
) -> None:
    wait_for(prometheus, 'count(up{job=~"switchyard-(web|worker)"} == 1) == 2')
    time.sleep(3)  # a few rule evaluations
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 6
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert rule["state"] == "inactive", rule["name"]
