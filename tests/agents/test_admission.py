"""Admission keeps a pool thread for control work: when the process is full, at most
(pool threads - 1) admissions wait for a slot; the last one hands its message back.

The semaphore stands for a full worker; the broker's side of a hand-back is the publish
(tests/e2e/test_capacity_e2e.py plays the whole thing against a real worker).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import kombu.exceptions
import pytest
from celery.exceptions import Reject

from agents import tasks
from agents.runtime import executors
from tests.conftest import require_service


@pytest.fixture
def two_pool_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(executors, "HANDBACK_WAIT_S", 0.01)
    monkeypatch.setattr(executors, "_waiting", 0)
    executors.set_pool_threads(2)
    yield
    executors.set_pool_threads(None)


def test_a_free_slot_is_taken_at_once(two_pool_threads: None) -> None:
    slots = threading.BoundedSemaphore(1)
    assert executors._acquire_slot(slots)


def test_a_full_process_lets_all_but_one_thread_wait(two_pool_threads: None) -> None:
    # Given a full process (no slot free) and 2 pool threads
    slots = threading.BoundedSemaphore(1)
    slots.acquire()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(executors._acquire_slot(slots)))
    waiter.start()
    while executors._waiting == 0:  # the first admission takes the one place to wait
        threading.Event().wait(0.001)
    # When a second admission comes, it does not get to wait
    assert executors._acquire_slot(slots) is False
    # Then the first still waits, and gets the slot once a run ends
    slots.release()
    waiter.join(timeout=5)
    assert results == [True]
    assert executors._waiting == 0


def test_one_pool_thread_never_waits_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "HANDBACK_WAIT_S", 0.01)
    executors.set_pool_threads(1)
    try:
        slots = threading.BoundedSemaphore(1)
        slots.acquire()
        assert executors._acquire_slot(slots) is False
    finally:
        executors.set_pool_threads(None)


class Published:
    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.args: list[Any] = []

    def __call__(self, args: tuple[str], **options: Any) -> None:
        if self.refuse:
            raise kombu.exceptions.OperationalError("Error 111 connecting. Connection refused.")
        self.args.append(args)


def _full(run_id: str) -> bool:
    raise executors.HandBack(run_id)


def test_a_handed_back_message_is_published_again(monkeypatch: pytest.MonkeyPatch) -> None:
    published = Published()
    monkeypatch.setattr(tasks, "admit_run", _full)
    monkeypatch.setattr(tasks.execute_run_task, "apply_async", published)
    assert tasks.execute_run_task.run("3f1c") is False
    assert published.args == [("3f1c",)]


def test_a_hand_back_the_broker_refuses_requeues_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "admit_run", _full)
    monkeypatch.setattr(tasks.execute_run_task, "apply_async", Published(refuse=True))
    with pytest.raises(Reject) as rejected:
        tasks.execute_run_task.run("3f1c")
    assert rejected.value.requeue is True


def test_control_tasks_are_routed_to_the_control_queue(settings: Any) -> None:
    from config.celery import app

    control = settings.CONTROL_QUEUE
    route = app.amqp.router.route
    for name in ("agents.reap_runs", "agents.purge_expired_tokens", "webhooks.dispatch_due"):
        assert route({}, name)["queue"].name == control
    assert route({}, "webhooks.deliver")["queue"].name == control
    assert route({}, "agents.execute_run")["queue"].name == settings.CELERY_TASK_DEFAULT_QUEUE
    # a worker without -Q consumes both, control first (served first: queue_order_strategy)
    assert list(app.amqp.queues)[:2] == [control, settings.CELERY_TASK_DEFAULT_QUEUE]
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"


def test_a_worker_takes_a_waiting_control_message_before_older_run_messages(
    settings: Any,
) -> None:
    """kombu's Redis transport with the settings' queue_order_strategy: one BRPOP over the
    queues in the order consumed, so the control queue wins whatever waits in the runs
    queue (round_robin would alternate between them)."""
    import uuid

    from kombu import Connection, Consumer, Exchange, Producer, Queue

    require_service("Redis (REDIS_URL)", bool(settings.REDIS_URL))
    name = f"test-order-{uuid.uuid4().hex[:8]}"
    control, runs = (Queue(q, Exchange(q), routing_key=q) for q in (f"{name}.control", name))
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    received: list[str] = []
    with Connection(settings.CELERY_BROKER_URL, transport_options=options) as conn:
        producer = Producer(conn)
        for queue, bodies in ((runs, ["run 1", "run 2"]), (control, ["reap"]), (runs, ["run 3"])):
            for body in bodies:
                producer.publish(
                    body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue]
                )

        def take(body: str, message: Any) -> None:
            received.append(body)
            message.ack()

        with Consumer(conn, [control, runs], callbacks=[take], prefetch_count=1):
            while len(received) < 4:
                conn.drain_events(timeout=5)
                if received == ["reap"]:  # the next control message wins again
                    producer.publish(
                        "reap again", exchange=control.exchange, routing_key=control.routing_key
                    )
        for queue in (control, runs):
            queue(conn.default_channel).delete()
    assert received[:2] == ["reap", "reap again"]
    assert received[2:] == ["run 1", "run 2"]
