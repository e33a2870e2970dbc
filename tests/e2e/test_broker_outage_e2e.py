"""A broker outage loses nothing and starts nothing twice (issue 11, finding 3).

A private Redis (broker and channel layer) on a free port is stopped while clients create
runs. The POSTs answer 201 queued, /readyz says the broker is down, and once Redis is back
the dispatcher in the server hands the runs over within seconds. There is no Celery beat
here, so no reaper pass can be what starts them.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_faults_e2e import (
    TERMINAL,
    all_events,
    assert_gap_free,
    get_run,
    private_stack,
    wait_until,
)

pytestmark = pytest.mark.e2e

RUNS = "/api/v1/agents/demo-assistant/runs/"


def test_runs_created_while_the_broker_is_down_start_once_soon_after_it_is_back(
    tmp_path: Path,
) -> None:
    with private_stack(tmp_path, beat=False, REAPER_INTERVAL_S="3600") as (stack, redis):
        # given the broker is down
        redis.stop()
        # when a client creates runs
        with stack.client() as client:
            created = [client.post(RUNS, json={"input": f"What is {i}+{i}?"}) for i in range(3)]
            ready = httpx.get(stack.base_url + "/readyz", timeout=10)
        # then each is a 201 queued, and /readyz names the broker as down
        assert [r.status_code for r in created] == [201, 201, 201], [r.text for r in created]
        assert {r.json()["status"] for r in created} == {"queued"}
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"]["ok"] is False
        run_ids = [r.json()["id"] for r in created]
        time.sleep(2)
        assert {get_run(stack, r)["status"] for r in run_ids} == {"queued"}
        assert {get_run(stack, r)["dispatched_at"] for r in run_ids} == {None}
        # when the broker is back
        redis.start()
        back = time.monotonic()
        wait_until(lambda: all(get_run(stack, r)["dispatched_at"] for r in run_ids), 20)
        handed_s = time.monotonic() - back
        # (the worker reconnects on its own back-off, kombu's 2, 4, 6 ... s)
        wait_until(lambda: all(get_run(stack, r)["status"] != "queued" for r in run_ids), 40)
        started_s = time.monotonic() - back
        runs = [
            wait_until(lambda r=r: (x := get_run(stack, r))["status"] in TERMINAL and x, 60)
            for r in run_ids
        ]
        # then every run was handed over within seconds, started exactly once, succeeded
        assert handed_s < 5, f"handed over {handed_s:.1f} s after the broker came back"
        for run in runs:
            events = all_events(stack, run["id"])
            assert_gap_free(events)
            assert [e["type"] for e in events].count("run.started") == 1
            assert run["status"] == "succeeded" and run["attempt"] == 1
        assert httpx.get(stack.base_url + "/readyz", timeout=10).status_code == 200
        print(f"broker back -> runs handed over {handed_s:.1f} s, started {started_s:.1f} s")
