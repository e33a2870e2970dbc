"""The platform's own metrics move when runs happen, and /metrics serves them."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from prometheus_client import REGISTRY

from agents.runtime import execute_run
from agents.services import run_create

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.asyncio
async def test_a_finished_run_counts_in_runs_tokens_tool_calls_and_queue_wait(
    alice: Any, demo_agent: Any
) -> None:
    agent = {"agent": "demo-assistant"}
    before = {
        "runs": sample("switchyard_runs_finished_total", status="succeeded", **agent),
        "tokens": sample("switchyard_tokens_total", direction="output", **agent),
        "tools": sample("switchyard_tool_calls_total", tool="calculator", outcome="ok"),
        "waits": sample("switchyard_run_queue_wait_seconds_count", **agent),
        "calls": sample("switchyard_model_calls_total", price_source="free", **agent),
    }
    run, _ = await sync_to_async(run_create)(
        agent=demo_agent, owner=alice, input="What is 2*21?", enqueue=False
    )
    assert await execute_run(run.id) == "succeeded"
    after = {
        "runs": sample("switchyard_runs_finished_total", status="succeeded", **agent),
        "tokens": sample("switchyard_tokens_total", direction="output", **agent),
        "tools": sample("switchyard_tool_calls_total", tool="calculator", outcome="ok"),
        "waits": sample("switchyard_run_queue_wait_seconds_count", **agent),
        "calls": sample("switchyard_model_calls_total", price_source="free", **agent),
    }
    assert after["runs"] == before["runs"] + 1
    assert after["tokens"] > before["tokens"]
    assert after["tools"] == before["tools"] + 1
    assert after["waits"] == before["waits"] + 1
    assert after["calls"] == before["calls"] + 2
    from django.db import connections

    await sync_to_async(connections.close_all)()


def test_metrics_are_served_in_the_prometheus_format(db: None) -> None:
    body = Client().get("/metrics").content.decode()
    for name in (
        "switchyard_runs_finished_total",
        "switchyard_run_queue_wait_seconds",
        "switchyard_websocket_connections",
        "django_http_requests_total_by_method",
    ):
        assert name in body


def test_every_query_counts_with_its_latency_per_database_alias(db: None) -> None:
    from django.contrib.auth import get_user_model

    # Given the counters for the default alias before
    labels = {"alias": "default", "vendor": "postgresql"}
    executed = sample("django_db_execute_total", **labels)
    timed = sample("django_db_query_duration_seconds_count", **labels)
    # When three queries run
    for _ in range(3):
        list(get_user_model().objects.all()[:1])
    # Then each is counted and timed, and /metrics serves both per alias
    assert sample("django_db_execute_total", **labels) - executed == 3
    assert sample("django_db_query_duration_seconds_count", **labels) - timed == 3
    body = Client().get("/metrics").content.decode()
    assert 'django_db_execute_total{alias="default",vendor="postgresql"}' in body
    assert 'django_db_query_duration_seconds_bucket{alias="default"' in body
