"""The Celery worker serves the run-side metrics it counts (WORKER_METRICS_PORT)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_run_stream_e2e import start_run, wait_for_status

pytestmark = pytest.mark.e2e


def sample(body: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if not labels and line.startswith(f"{name} "):
            return float(line.split()[1])
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def scrape(stack: Stack) -> str:
    """The worker's metrics; it may still be starting (the stack waits for daphne only)."""
    url = f"http://127.0.0.1:{stack.env['WORKER_METRICS_PORT']}/metrics"
    deadline = time.monotonic() + 30
    while True:
        try:
            response = httpx.get(url, timeout=5)
            break
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert response.status_code == 200
    return response.text


def wait_until_no_run_is_unfinished(stack: Stack, timeout: float = 60) -> None:
    """Runs that earlier tests of the shared stack left going would finish between the two
    scrapes and count as this test's; the web's run-state gauges say when all are done."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
        unfinished = sum(
            sample(body, "switchyard_runs_in_status", status=s)
            for s in ("queued", "running", "cancelling")
        )
        if unfinished == 0 and sample(body, "switchyard_run_state_up") == 1:
            return
        assert time.monotonic() < deadline, f"{unfinished:g} runs still unfinished"
        time.sleep(0.2)


def test_the_worker_serves_the_metrics_of_the_runs_it_executes(
    distributed_stack: Stack,
) -> None:
    wait_until_no_run_is_unfinished(distributed_stack)
    before = scrape(distributed_stack)
    run = start_run(distributed_stack, "What is 12*7?")
    assert wait_for_status(distributed_stack, run["id"])["status"] == "succeeded"
    after = scrape(distributed_stack)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    agent = "demo-assistant"
    assert grew("switchyard_runs_finished_total", agent=agent, status="succeeded") == 1
    assert grew("switchyard_tool_calls_total", tool="calculator", outcome="ok") == 1
    assert grew("switchyard_tokens_total", agent=agent, direction="output") > 0
    assert grew("switchyard_run_duration_seconds_count", agent=agent) == 1
    # daphne's side stays on daphne: the worker created no run.
    assert "switchyard_runs_created_total{" not in after
