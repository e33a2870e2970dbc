"""End to end: a run on a real stack (daphne + Celery, and the embedded server) reaches a
webhook receiver on 127.0.0.1, signed, after its terminal transaction commits."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_run_stream_e2e import start_run, wait_for_status
from tests.webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e


def wait_until_idle(stack: Stack, timeout: float = 60) -> None:
    """No run of the (shared) stack still in flight: an earlier test's run that finishes
    after the endpoint exists would be delivered to it too."""
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while time.monotonic() < deadline:
            busy = [
                run
                for status in ("queued", "running", "cancelling")
                for run in client.get("/api/v1/runs/", params={"status": status}).json()["results"]
            ]
            if not busy:
                return
            time.sleep(0.2)
    raise AssertionError(f"runs still in flight: {busy}")


def test_a_finished_run_is_delivered_signed_to_its_owners_webhook(stack: Stack) -> None:
    wait_until_idle(stack)
    with running_receiver(fail_first=1) as receiver, stack.client() as client:
        # given an endpoint for succeeded runs whose receiver fails the first attempt
        created = client.post(
            "/api/v1/webhooks/", json={"url": receiver.url, "events": ["run.succeeded"]}
        )
        assert created.status_code == 201, created.text
        endpoint, secret = created.json()["id"], created.json()["secret"]
        # when a run succeeds
        run = start_run(stack, "What is 12*7?")
        assert wait_for_status(stack, run["id"])["status"] == "succeeded"
        # then the retry (5 s after the failure) brings the event, signed, once
        receiver.wait_for(2, timeout=30)
        (payload,) = receiver.verified(secret)
        assert payload["type"] == "run.succeeded"
        assert payload["data"]["run"]["id"] == run["id"]
        assert "84" in payload["data"]["run"]["output"]
        log = client.get(f"/api/v1/webhooks/{endpoint}/deliveries/").json()["results"]
        assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
            ("delivered", 2, 200)
        ]
        assert secret not in stack.tail_logs()
        client.delete(f"/api/v1/webhooks/{endpoint}/")
