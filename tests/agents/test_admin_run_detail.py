"""The run detail page in the admin: read-only, every field current, children linked."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Run, RunEvent
from agents.services import run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_browser(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def finished_run(agent: Any, owner: Any, **fields: Any) -> Run:
    run, _ = run_create(agent=agent, owner=owner, input="what is 12*7?", enqueue=False)
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=5)
    values = {
        "status": "succeeded",
        "started_at": start,
        "finished_at": start + timedelta(seconds=2, milliseconds=500),
        "output": "The result is 84.",
        "requests": 2,
        "input_tokens": 31,
        "output_tokens": 7,
        "tool_calls": 1,
        "cost_usd": Decimal("0.000123"),
        **fields,
    }
    Run.objects.filter(pk=run.pk).update(**values)
    now = timezone.now()
    for seq, (type_, data) in enumerate(
        [
            ("message.delta", {"delta": "The result is 84."}),
            ("message.completed", {"content": "The result is 84."}),
            ("run.succeeded", {"output": "The result is 84.", "usage": {"input_tokens": 31}}),
        ],
        start=2,
    ):
        RunEvent.objects.create(run=run, seq=seq, type=type_, data=data, created_at=now)
    run.refresh_from_db()
    return run


def test_the_detail_is_read_only_and_shows_times_to_the_second(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    # Given a finished run
    run = finished_run(demo_agent, alice)
    # When an operator opens it
    body = bob_browser.get(f"/admin/agents/run/{run.pk}/change/").content.decode()
    # Then it has no Save button and no form to post
    assert 'name="_save"' not in body and 'name="_continue"' not in body
    # And its times carry seconds
    started = timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f'data-field="started_at">{started}<' in body
    assert 'data-field="duration">2.50 s<' in body
    # And a post is refused rather than saved
    response = bob_browser.post(f"/admin/agents/run/{run.pk}/change/", {"status": "failed"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_the_output_is_shown_once(bob_browser: Client, demo_agent: Any, alice: Any) -> None:
    run = finished_run(demo_agent, alice)
    body = bob_browser.get(f"/admin/agents/run/{run.pk}/change/").content.decode()
    assert body.count("The result is 84.") == 1
    assert "the answer, shown under Output" in body


def test_the_summary_endpoint_returns_every_field_the_page_swaps(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    run = finished_run(demo_agent, alice)
    summary = bob_browser.get(f"/admin/agents/run/{run.pk}/summary/").json()
    assert summary["status"] == "succeeded" and summary["terminal"] is True
    assert summary["output"] == "The result is 84."
    assert (summary["input_tokens"], summary["output_tokens"]) == ("31", "7")
    assert summary["cost_usd"] == "$0.000123"
    page = bob_browser.get(f"/admin/agents/run/{run.pk}/change/").content.decode()
    swapped = {name for name in summary if f'data-field="{name}"' in page}
    assert swapped >= {
        "status",
        "agent",
        "owner",
        "created_at",
        "started_at",
        "finished_at",
        "queue_wait",
        "duration",
        "requests",
        "input_tokens",
        "output_tokens",
        "tool_calls",
        "cost_usd",
        "output",
        "error",
    }


def test_the_summary_needs_the_view_permission(alice: Any, demo_agent: Any) -> None:
    run = finished_run(demo_agent, alice)
    client = Client()
    client.force_login(alice)  # not staff: the admin sends her to its login page
    assert client.get(f"/admin/agents/run/{run.pk}/summary/").status_code == 302


def test_parent_and_child_runs_link_to_each_other(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    # Given a run that delegated to a child run
    parent = finished_run(demo_agent, alice)
    child, _ = run_create(
        agent=demo_agent, owner=alice, input="sub task", parent=parent, enqueue=False
    )
    # Then the parent's page links the child and the child's page links the parent
    parent_page = bob_browser.get(f"/admin/agents/run/{parent.pk}/change/").content.decode()
    assert f"/admin/agents/run/{child.pk}/change/" in parent_page
    child_page = bob_browser.get(f"/admin/agents/run/{child.pk}/change/").content.decode()
    assert f"/admin/agents/run/{parent.pk}/change/" in child_page
    assert bob_browser.get(f"/admin/agents/run/{parent.pk}/summary/").json()["children"][0][
        "id"
    ] == str(child.pk)


def test_the_timeline_offers_a_filter_per_event_kind(
    bob_browser: Client, demo_agent: Any, alice: Any
) -> None:
    run = finished_run(demo_agent, alice)
    body = bob_browser.get(f"/admin/agents/run/{run.pk}/change/").content.decode()
    for kind in ("run", "message", "tool", "moderation", "usage"):
        assert f'<input type="checkbox" value="{kind}" checked>' in body
    assert 'data-kind="run"' in body
