"""Webhook fan-out and delivery against a real receiver on 127.0.0.1, verified with the
standardwebhooks package as a receiver would verify them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agents.lifecycle import RunStatus
from agents.models import ModelCall, Run
from agents.services import run_transition
from core.errors import ApplicationError
from webhooks.endpoint_services import endpoint_create, endpoint_secret_rotate
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import deliveries_dispatch_due, delivery_attempt

from .receiver import running_receiver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def make_run(demo_agent: Any, alice: Any) -> Callable[..., Run]:
    def make(owner: Any = None, agent: Any = None) -> Run:
        return Run.objects.create(
            agent=agent or demo_agent,
            owner=owner or alice,
            input="What is 12*7?",
            status=RunStatus.RUNNING,
            started_at=timezone.now(),
        )

    return make


def finish(run: Run, capture: Any, status: str = RunStatus.SUCCEEDED) -> None:
    with capture(execute=True):
        run_transition(run_id=run.id, to=status, event_data={"output": "84"}, output="84")


def drain(max_rounds: int = 10) -> None:
    """Make every pending retry due now and dispatch, as the periodic dispatcher would."""
    for _ in range(max_rounds):
        pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        if not pending.exists():
            return
        pending.update(next_attempt_at=timezone.now())
        deliveries_dispatch_due()


def test_a_receiver_that_fails_twice_gets_the_event_exactly_once_with_a_valid_signature(
    alice: Any, make_run: Callable[..., Run], django_capture_on_commit_callbacks: Any
) -> None:
    with running_receiver(fail_first=2) as receiver:
        # given an endpoint of alice's for succeeded runs, whose receiver fails twice
        endpoint, secret = endpoint_create(owner=alice, url=receiver.url, events=["run.succeeded"])
        run = make_run()
        # when her run succeeds and the retries are dispatched
        finish(run, django_capture_on_commit_callbacks)
        drain()
        # then the receiver was asked three times with one webhook-id ...
        assert len(receiver.requests) == 3
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
        # ... and after de-duplication holds the event once, correctly signed
        (payload,) = receiver.verified(secret)
    assert payload["type"] == "run.succeeded"
    assert payload["data"]["run"]["id"] == str(run.id)
    assert payload["data"]["run"]["output"] == "84"
    assert payload["data"]["event"]["type"] == "run.succeeded"
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)


def test_a_tampered_payload_fails_verification(
    alice: Any, make_run: Callable[..., Run], django_capture_on_commit_callbacks: Any
) -> None:
    with running_receiver() as receiver:
        _, secret = endpoint_create(owner=alice, url=receiver.url, events=["run.succeeded"])
        finish(make_run(), django_capture_on_commit_callbacks)
        (request,) = receiver.requests
    Webhook(secret).verify(request.body, request.headers)  # the original verifies
    tampered = request.body.replace(b'"84"', b'"85"')
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(request.body, request.headers)


def test_a_receiver_that_never_answers_does_not_hold_up_the_worker(
    alice: Any, make_run: Callable[..., Run], settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_S = 0.5
    with running_receiver(hang_s=3) as receiver:
        endpoint, _ = endpoint_create(owner=alice, url=receiver.url, events=["run.failed"])
        run_transition(run_id=make_run().id, to=RunStatus.FAILED, error_code="x")
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        started = time.monotonic()
        outcome = delivery_attempt(delivery_id=delivery.pk)
        took = time.monotonic() - started
    assert took < 2.0
    delivery.refresh_from_db()
    assert outcome == "pending" and delivery.attempts == 1
    assert "timed out" in delivery.last_error
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > timezone.now()


def test_an_attempt_in_progress_is_not_made_twice(alice: Any, make_run: Callable[..., Run]) -> None:
    with running_receiver() as receiver:
        endpoint, _ = endpoint_create(owner=alice, url=receiver.url, events=["run.succeeded"])
        run_transition(run_id=make_run().id, to=RunStatus.SUCCEEDED)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            locked_until=timezone.now() + timezone.timedelta(seconds=30)
        )
        assert delivery_attempt(delivery_id=delivery.pk) is None
        assert deliveries_dispatch_due() == 0
        assert receiver.requests == []


def test_a_redirect_is_not_followed(alice: Any, settings: Any) -> None:
    from http.server import ThreadingHTTPServer
    from threading import Thread

    from tests.fakes.quiet_http import QuietHandler

    class Redirect(QuietHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        endpoint, _ = endpoint_create(
            owner=alice, url=url, events=["webhook.test"][:0] or ["run.failed"]
        )
        from webhooks.services import delivery_send_test

        delivery = delivery_send_test(endpoint=endpoint)
        delivery_attempt(delivery_id=delivery.pk)
    finally:
        server.shutdown()
        server.server_close()
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.last_status_code == 307
    assert "redirects are not followed" in delivery.last_error


def test_loopback_and_private_urls_are_refused_without_the_allow_list(
    alice: Any, settings: Any, make_run: Callable[..., Run]
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = []
    with pytest.raises(ApplicationError) as caught:
        endpoint_create(owner=alice, url="http://127.0.0.1:9/hook", events=["run.failed"])
    assert caught.value.code == "invalid_url" and "loopback" in caught.value.message
    with pytest.raises(ApplicationError):
        endpoint_create(owner=alice, url="http://169.254.169.254/", events=["run.failed"])
    with pytest.raises(ApplicationError):
        endpoint_create(owner=alice, url="ftp://example.com/", events=["run.failed"])
    # a host name is judged at send time, on the address it resolves to
    with running_receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        endpoint, _ = endpoint_create(
            owner=alice, url=f"http://localhost:{port}", events=["run.failed"]
        )
        run_transition(run_id=make_run().id, to=RunStatus.FAILED, error_code="x")
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        delivery_attempt(delivery_id=delivery.pk)
        assert receiver.requests == []
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("refused:")
    assert endpoint.is_active is False and "refused" in endpoint.disabled_reason


def test_an_endpoint_is_disabled_after_its_retries_run_out(
    alice: Any, make_run: Callable[..., Run], django_capture_on_commit_callbacks: Any
) -> None:
    with running_receiver(fail_first=100) as receiver:
        endpoint, _ = endpoint_create(owner=alice, url=receiver.url, events=["run.succeeded"])
        finish(make_run(), django_capture_on_commit_callbacks)
        drain()
        assert len(receiver.requests) == 4  # the first attempt and the schedule's three
    endpoint.refresh_from_db()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "failed" and delivery.attempts == 4
    assert endpoint.is_active is False
    assert "failed 4 time(s)" in endpoint.disabled_reason and "HTTP 500" in endpoint.disabled_reason
    # a disabled endpoint gets no new deliveries
    finish(make_run(), django_capture_on_commit_callbacks)
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1


def test_during_a_rotation_both_the_old_and_the_new_secret_verify(
    alice: Any, make_run: Callable[..., Run], django_capture_on_commit_callbacks: Any
) -> None:
    with running_receiver() as receiver:
        endpoint, old = endpoint_create(owner=alice, url=receiver.url, events=["run.succeeded"])
        new = endpoint_secret_rotate(endpoint=endpoint, actor=alice)
        finish(make_run(), django_capture_on_commit_callbacks)
    assert new != old and new.startswith("whsec_")
    assert len(receiver.verified(old)) == 1 and len(receiver.verified(new)) == 1
    assert len(receiver.requests[0].headers["webhook-signature"].split(" ")) == 2


def test_events_reach_only_endpoints_that_want_them_and_may_see_them(
    alice: Any,
    bob: Any,
    charlie: Any,
    demo_agent: Any,
    make_run: Callable[..., Run],
) -> None:
    from agents.models import Agent

    other = Agent.objects.create(slug="other", name="Other", provider=demo_agent.provider)
    url = "http://127.0.0.1:9/hook"
    mine, _ = endpoint_create(owner=alice, url=url, events=["run.succeeded"])
    only_failed, _ = endpoint_create(owner=alice, url=url, events=["run.failed"])
    other_agent, _ = endpoint_create(owner=alice, url=url, events=["run.succeeded"], agent=other)
    outsider, _ = endpoint_create(owner=charlie, url=url, events=["run.succeeded"])
    superuser, _ = endpoint_create(owner=bob, url=url, events=["run.succeeded"])
    run_transition(run_id=make_run().id, to=RunStatus.SUCCEEDED)
    got = set(WebhookDelivery.objects.values_list("endpoint_id", flat=True))
    assert got == {mine.pk, superuser.pk}
    assert {only_failed.pk, other_agent.pk, outsider.pk}.isdisjoint(got)


def test_an_operator_with_view_run_gets_everyones_runs(
    alice: Any, make_user: Callable[..., Any], make_run: Callable[..., Run]
) -> None:
    dave = make_user("dave")
    dave.user_permissions.add(Permission.objects.get(codename="view_run"))
    endpoint, _ = endpoint_create(owner=dave, url="http://127.0.0.1:9/", events=["run.succeeded"])
    run_transition(run_id=make_run().id, to=RunStatus.SUCCEEDED)
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1


def test_budget_thresholds_are_announced_once_each_month(
    bob: Any, demo_agent: Any, make_run: Callable[..., Run]
) -> None:
    demo_agent.monthly_budget_usd = Decimal("1.00")
    demo_agent.save()
    endpoint, _ = endpoint_create(owner=bob, url="http://127.0.0.1:9/", events=["budget.threshold"])

    def spend(amount: str) -> None:
        run = make_run()
        ModelCall.objects.create(
            run=run,
            agent=demo_agent,
            model="demo",
            provider=demo_agent.provider,
            cost_usd=Decimal(amount),
            price_source="override",
        )
        run_transition(run_id=run.id, to=RunStatus.SUCCEEDED)

    def announced() -> list[int]:
        return [
            d.payload["data"]["threshold_percent"]
            for d in WebhookDelivery.objects.filter(endpoint=endpoint).order_by("created_at")
        ]

    spend("0.50")
    assert announced() == []
    spend("0.35")  # 85 %
    assert announced() == [80]
    spend("0.05")  # 90 %: 80 % was announced already
    assert announced() == [80]
    spend("0.20")  # 110 %
    assert announced() == [80, 100]
    payload = (
        WebhookDelivery.objects.filter(endpoint=endpoint).order_by("created_at").last().payload
    )  # type: ignore[union-attr]
    assert payload["data"]["budget_usd"] == "1.000000"
    assert payload["data"]["spent_usd"] == "1.100000"


def test_moderation_flags_are_delivered(alice: Any, make_run: Callable[..., Run]) -> None:
    from moderation.models import Policy, Rule
    from moderation.services import flags_record, policy_compile

    policy = Policy.objects.create(name="p")
    Rule.objects.create(
        policy=policy,
        order=1,
        name="Codename",
        kind="keyword",
        params={"terms": ["project falcon"]},
        action="flag",
        severity="high",
    )
    endpoint, _ = endpoint_create(
        owner=alice, url="http://127.0.0.1:9/", events=["moderation.flagged"]
    )
    run = make_run()
    text = "tell me about project falcon"
    findings = policy_compile(policy).scan(text, "input").findings
    flags_record(run_id=run.id, agent_id=run.agent_id, text=text, findings=findings)
    (delivery,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    flag = delivery.payload["data"]["flag"]
    assert (flag["rule"], flag["severity"], flag["run"]) == ("Codename", "high", str(run.id))


def test_secrets_never_appear_in_logs_or_the_delivery_log(
    alice: Any,
    make_run: Callable[..., Run],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_receiver(fail_first=1) as receiver:
        endpoint, secret = endpoint_create(owner=alice, url=receiver.url, events=["run.succeeded"])
        rotated = endpoint_secret_rotate(endpoint=endpoint, actor=alice)
        finish(make_run(), django_capture_on_commit_callbacks)
        drain()
    printed = capsys.readouterr()
    rows = json.dumps(list(WebhookDelivery.objects.values()), default=str)
    endpoints = json.dumps(list(WebhookEndpoint.objects.values()), default=str)
    for value in (secret, rotated, secret.removeprefix("whsec_"), rotated.removeprefix("whsec_")):
        assert value not in caplog.text
        assert value not in printed.out + printed.err
        assert value not in rows and value not in endpoints
    assert "webhook_attempt" in caplog.text  # the attempts were logged, without secrets
