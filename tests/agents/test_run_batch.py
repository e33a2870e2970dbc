"""POST /api/v1/agents/<slug>/runs/batch/: many runs in one transaction, whole or not at all."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Agent, Run, RunBatch, RunEvent, Thread

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/agents/demo-assistant/runs/batch/"


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """What reached the executor, in order (the broker's side of the hand-over)."""
    sent_ids: list[uuid.UUID] = []

    def many(run_ids: list[uuid.UUID], *, sent: list[uuid.UUID]) -> None:
        for run_id in run_ids:
            sent.append(run_id)
            sent_ids.append(run_id)

    monkeypatch.setattr("agents.runtime.executors.enqueue_run", sent_ids.append)
    monkeypatch.setattr("agents.runtime.executors.enqueue_runs", many)
    return sent_ids


def post(client: APIClient, body: Any, key: str | None = None) -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(BATCH, body, format="json", **headers)


def inputs(count: int, **fields: Any) -> dict[str, Any]:
    return {"inputs": [{"input": f"case {i}", **fields} for i in range(count)]}


def test_a_batch_creates_queued_runs_in_input_order_and_hands_them_over(
    alice_api: APIClient,
    alice: Any,
    demo_agent: Any,
    enqueued: list[uuid.UUID],
    django_capture_on_commit_callbacks: Any,
) -> None:
    thread = Thread.objects.create(agent=demo_agent, owner=alice)
    body = {
        "inputs": [
            {"input": "first"},
            {"input": "second", "thread": str(thread.pk), "limits": {"max_requests": 2}},
            {"input": "third", "metadata": {"case": "c-3", "split": "dev"}},
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post(alice_api, body)
    assert response.status_code == 201, response.content
    ids = response.json()["runs"]
    runs = {str(r.pk): r for r in Run.objects.all()}
    assert [runs[i].input for i in ids] == ["first", "second", "third"]
    assert {r.status for r in runs.values()} == {"queued"}
    assert runs[ids[1]].thread_id == thread.pk
    assert runs[ids[1]].config["limits"]["max_requests"] == 2
    assert runs[ids[1]].limits == {"max_requests": 2}
    assert runs[ids[2]].config["client"] == {"metadata": {"case": "c-3", "split": "dev"}}
    assert runs[ids[0]].config["agent_version"] == demo_agent.version
    # one run.queued each, the runs handed over after the commit and marked so
    queued = RunEvent.objects.filter(type="run.queued", seq=1)
    assert sorted(str(e.run_id) for e in queued) == sorted(ids)
    assert [str(i) for i in enqueued] == ids
    assert all(r.dispatched_at is not None for r in Run.objects.all())
    # each run reads like a single create's
    one = alice_api.get(f"/api/v1/runs/{ids[0]}/").json()
    assert (one["status"], one["agent"], one["owner"]) == ("queued", "demo-assistant", "alice")


def test_a_thousand_inputs_are_two_bulk_inserts_not_a_thousand(
    alice_api: APIClient,
    demo_agent: Any,
    enqueued: list[uuid.UUID],
    django_assert_max_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_assert_max_num_queries(25), django_capture_on_commit_callbacks(execute=True):
        response = post(alice_api, inputs(1000))
    assert response.status_code == 201
    assert len(response.json()["runs"]) == 1000 == Run.objects.count()
    assert RunEvent.objects.count() == 1000
    assert len(enqueued) == 1000


def test_one_invalid_input_creates_nothing_and_every_error_names_its_path(
    alice_api: APIClient, bob: Any, demo_agent: Any, enqueued: list[uuid.UUID], settings: Any
) -> None:
    settings.RUN_MAX_INPUT_CHARS = 10
    demo_agent.max_requests = 3
    demo_agent.save()
    others = Thread.objects.create(agent=demo_agent, owner=bob)
    body = {
        "inputs": [
            {"input": "fine"},
            {"input": "x" * 11},
            {"input": "fine", "thread": str(others.pk)},
            {"input": "fine", "limits": {"max_requests": 4}},
            {"input": "fine", "thread": str(uuid.uuid4())},
        ]
    }
    response = post(alice_api, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert set(error["details"]) == {
        "inputs[1].input",
        "inputs[2].thread",  # someone else's thread is no thread of yours
        "inputs[3].limits.max_requests",
        "inputs[4].thread",
    }
    assert Run.objects.count() == 0 and RunEvent.objects.count() == 0
    assert enqueued == []


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"inputs": []}, {"inputs"}),
        ({}, {"inputs"}),
        ({"inputs": "text"}, {"inputs"}),
        ({"inputs": [{"input": "a"}], "extra": 1}, {"extra"}),
        ({"inputs": [{"input": "a"}, {"input": ""}]}, {"inputs[1].input"}),
        ({"inputs": [{"input": "a"}, {"input": 5}]}, {"inputs[1].input"}),
        ({"inputs": [{"input": "a", "thread": "nope"}]}, {"inputs[0].thread"}),
        ({"inputs": [{"input": "a", "colour": "red"}]}, {"inputs[0].colour"}),
        (
            {"inputs": [{"input": "a", "limits": {"max_requests": 0}}]},
            {"inputs[0].limits.max_requests"},
        ),
        ({"inputs": [{"input": "a", "limits": {"speed": 1}}]}, {"inputs[0].limits.speed"}),
        ({"inputs": [{"input": "a", "metadata": {"k": 1}}]}, {"inputs[0].metadata.k"}),
        (
            {"inputs": [{"input": "a", "metadata": {f"k{i}": "v" for i in range(17)}}]},
            {"inputs[0].metadata"},
        ),
        ({"inputs": [{"input": "a", "metadata": {"k" * 65: "v"}}]}, {"inputs[0].metadata"}),
        ({"inputs": [{"input": "a"}] * 1001}, {"inputs"}),
    ],
)
def test_a_malformed_batch_is_a_400_naming_each_path(
    alice_api: APIClient, demo_agent: Any, body: Any, paths: set[str]
) -> None:
    response = post(alice_api, body)
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]) == paths
    assert Run.objects.count() == 0


def test_the_quota_counts_the_whole_batch_all_or_none(
    alice_api: APIClient, demo_agent: Any, enqueued: list[uuid.UUID], settings: Any
) -> None:
    settings.RUNS_MAX_ACTIVE_PER_OWNER = 5
    assert post(alice_api, inputs(3)).status_code == 201
    response = post(alice_api, inputs(3))
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "too_many_runs"
    assert error["details"] == {"limit": 5, "active": 3, "requested": 3}
    assert Run.objects.count() == 3
    assert post(alice_api, inputs(2)).status_code == 201


def test_the_same_key_and_body_return_the_same_runs(
    alice_api: APIClient,
    demo_agent: Any,
    enqueued: list[uuid.UUID],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = post(alice_api, inputs(3, limits={"max_requests": 2}), key="eval-7")
        again = post(alice_api, inputs(3, limits={"max_requests": 2}), key="eval-7")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["runs"] == again.json()["runs"]
    assert Run.objects.count() == 3 and RunBatch.objects.count() == 1
    assert len(enqueued) == 3


def test_the_same_key_with_another_body_is_a_422(
    alice_api: APIClient, demo_agent: Any, enqueued: list[uuid.UUID]
) -> None:
    first = post(alice_api, inputs(3), key="eval-8")
    for other in (inputs(2), {"inputs": list(reversed(inputs(3)["inputs"]))}):
        response = post(alice_api, other, key="eval-8")
        assert response.status_code == 422, response.content
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert error["details"] == {"batch": str(RunBatch.objects.get().pk)}
    assert Run.objects.count() == len(first.json()["runs"])


def test_a_batch_key_is_the_owners_and_apart_from_single_create_keys(
    alice_api: APIClient, charlie_api: APIClient, demo_agent: Any, enqueued: list[uuid.UUID]
) -> None:
    assert post(alice_api, inputs(2), key="k").status_code == 201
    assert post(charlie_api, inputs(2), key="k").status_code == 201
    single = alice_api.post(
        "/api/v1/agents/demo-assistant/runs/",
        {"input": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert single.status_code == 201
    assert Run.objects.count() == 5


def test_an_inactive_or_unknown_agent_and_a_long_key_are_refused(
    alice_api: APIClient, demo_agent: Any
) -> None:
    assert post(alice_api, inputs(1), key="k" * 256).json()["error"]["code"] == (
        "invalid_idempotency_key"
    )
    Agent.objects.filter(pk=demo_agent.pk).update(is_active=False)
    assert post(alice_api, inputs(1)).status_code == 409
    missing = alice_api.post("/api/v1/agents/nope/runs/batch/", inputs(1), format="json")
    assert missing.status_code == 404
    assert Run.objects.count() == 0


def test_a_broker_refusal_leaves_the_runs_owed_to_the_dispatcher(
    alice_api: APIClient,
    demo_agent: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def half_then_down(run_ids: list[uuid.UUID], *, sent: list[uuid.UUID]) -> None:
        sent.append(run_ids[0])
        raise ConnectionError("broker down")

    monkeypatch.setattr("agents.runtime.executors.enqueue_runs", half_then_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(alice_api, inputs(3))
    assert response.status_code == 201
    ids = response.json()["runs"]
    dispatched = dict(Run.objects.values_list("id", "dispatched_at"))
    assert dispatched[uuid.UUID(ids[0])] is not None
    assert [dispatched[uuid.UUID(i)] for i in ids[1:]] == [None, None]
