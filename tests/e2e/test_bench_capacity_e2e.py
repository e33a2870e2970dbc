"""The capacity benchmark works: a tiny round of tests/perf/bench_capacity.py, end to end.

It boots its own stack (daphne, one worker as ``make run`` starts it, beat) and the fake
streaming server in its own process. Only the report's structure and the absence of
errors are checked: the figures are for the benchmark to print, not for a test to judge.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.perf.bench_capacity import Options, print_tables, run_bench

pytestmark = pytest.mark.e2e


def test_a_small_capacity_round_succeeds_and_reports_every_figure(redis_url: str) -> None:
    # Given 20 runs of 10 tokens submitted at once on make run's configuration, by
    # single creates and then as one batch
    options = Options(
        ns=[20], ttft_ms=50, tokens=10, configs=["make-run"], creates=["single", "batch"], watch=4
    )
    options.redis_url = redis_url
    options.round_timeout_s = 120  # a run left behind is an error, not a test timeout
    # When the benchmark runs them
    report = run_bench(options)
    print_tables(report)
    # Then every run succeeded with every event stored, and each figure is there
    assert [r["create"] for r in report["rounds"]] == ["single", "batch"]
    for result in report["rounds"]:
        check(result)


def check(result: dict[str, Any]) -> None:
    assert result["errors"] == {}, result["errors"]
    assert result["runs_complete"] == 20
    assert result["fake_server"]["requests"] == 20
    assert result["fake_server"]["tokens_sent"] == 200
    assert result["fake_server"]["repeated_prompts"] == 0
    assert result["watched_runs"] == result["watched_complete"] == 4
    assert result["deltas_per_run_ws_median"] >= 1
    for key in ("wall_s", "runs_per_s", "latency_p50_ms", "latency_p99_ms", "peak_in_flight"):
        assert result[key] is not None and result[key] > 0, key
    assert result["delta_gap_p99_ms"] is not None
    assert set(result["cpu_us_per_token"]) >= {"worker", "daphne", "fake server"}
