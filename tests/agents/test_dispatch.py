"""A run is committed first and handed to the broker after; a refused hand-over is owed,
not lost, and the dispatcher pays it once the broker answers (issue 11, finding 3).

The broker's refusal is what kombu raises on a refused connection; the end-to-end test in
tests/e2e/test_broker_outage_e2e.py stops a real Redis instead.
"""

from __future__ import annotations

import uuid
from typing import Any

import kombu.exceptions
import pytest
from rest_framework.test import APIClient

from agents.models import Run
from agents.services import runs_dispatch, runs_reap

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = "/api/v1/agents/demo-assistant/runs/"


class Broker:
    """Stands in for the broker at the network edge: takes messages, or refuses them."""

    def __init__(self) -> None:
        self.up = True
        self.taken: list[uuid.UUID] = []

    def publish(self, run_id: uuid.UUID) -> None:
        if not self.up:
            raise kombu.exceptions.OperationalError("Error 111 connecting. Connection refused.")
        self.taken.append(run_id)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    broker = Broker()
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", broker.publish)
    return broker


def test_a_run_created_while_the_broker_is_down_is_a_201_queued_and_owed(
    alice_api: APIClient, demo_agent: Any, broker: Broker
) -> None:
    # given a broker that refuses
    broker.up = False
    # when alice creates a run
    response = alice_api.post(RUNS, {"input": "hello"}, format="json")
    # then the run exists, is queued, and its hand-over is owed
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued"
    run = Run.objects.get(pk=response.json()["id"])
    assert run.dispatched_at is None
    assert broker.taken == []


def test_the_dispatcher_hands_owed_runs_over_once_the_broker_is_back(
    alice_api: APIClient, demo_agent: Any, broker: Broker
) -> None:
    # given two runs created during an outage, and one created while the broker was up
    broker.up = False
    owed = [alice_api.post(RUNS, {"input": f"{i}"}, format="json").json()["id"] for i in (1, 2)]
    assert runs_dispatch(older_than_s=0) == 0  # still down: nothing sent, nothing marked
    broker.up = True
    handed = alice_api.post(RUNS, {"input": "up"}, format="json").json()["id"]
    # when the dispatcher runs twice
    first, second = runs_dispatch(older_than_s=0), runs_dispatch(older_than_s=0)
    # then each owed run went exactly once, and the other was not sent again
    assert (first, second) == (2, 0)
    assert [str(r) for r in broker.taken] == [handed, *owed]
    assert not Run.objects.filter(dispatched_at__isnull=True).exists()


def test_the_dispatcher_leaves_young_runs_to_their_own_request(
    alice_api: APIClient, demo_agent: Any, broker: Broker
) -> None:
    broker.up = False
    alice_api.post(RUNS, {"input": "x"}, format="json")
    broker.up = True
    assert runs_dispatch(older_than_s=60) == 0
    assert broker.taken == []


def test_a_run_that_left_the_queue_is_not_dispatched(
    alice_api: APIClient, demo_agent: Any, broker: Broker
) -> None:
    # given an owed run that was cancelled before the broker came back
    broker.up = False
    run_id = alice_api.post(RUNS, {"input": "x"}, format="json").json()["id"]
    assert alice_api.post(f"/api/v1/runs/{run_id}/cancel/").status_code == 200
    broker.up = True
    # then there is nothing to hand over
    assert runs_dispatch(older_than_s=0) == 0


def test_a_requeued_run_is_owed_again_when_its_hand_over_fails(
    alice_api: APIClient, demo_agent: Any, broker: Broker
) -> None:
    # given a run whose worker died (running, stale heartbeat), with the broker down
    from datetime import timedelta

    from django.utils import timezone

    run_id = alice_api.post(RUNS, {"input": "x"}, format="json").json()["id"]
    stale = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=run_id).update(status="running", attempt=1, heartbeat_at=stale)
    broker.up = False
    # when the reaper requeues it
    assert runs_reap()["requeued"] == 1
    # then it is owed, and the dispatcher hands it over once the broker is back
    assert Run.objects.get(pk=run_id).dispatched_at is None
    broker.up = True
    assert runs_dispatch(older_than_s=0) == 1
    assert [str(r) for r in broker.taken] == [run_id, run_id]


def test_run_retrying_says_from_which_seq_to_drop_the_lost_attempts_output(
    alice_api: APIClient, demo_agent: Any, broker: Broker
) -> None:
    # given a run whose first attempt started at seq 2 and streamed two deltas
    from datetime import timedelta

    from django.utils import timezone

    from agents.models import RunEvent

    run_id = alice_api.post(RUNS, {"input": "x"}, format="json").json()["id"]
    now = timezone.now()
    for seq, kind in ((2, "run.started"), (3, "message.delta"), (4, "message.delta")):
        RunEvent.objects.create(run_id=run_id, seq=seq, type=kind, data={}, created_at=now)
    stale = now - timedelta(minutes=5)
    Run.objects.filter(pk=run_id).update(status="running", attempt=1, heartbeat_at=stale)
    # when the reaper finds its worker lost
    runs_reap()
    # then run.retrying names the next attempt and the first seq to discard
    retrying = RunEvent.objects.get(run_id=run_id, type="run.retrying")
    assert retrying.seq == 5
    assert retrying.data == {"attempt": 2, "discard_from_seq": 3}
