"""Webhook endpoints, fan-out of events into deliveries, and the delivery attempts.

A delivery is a row first and a message second: the row is written in the transaction
that made the event happen (a run's terminal status, a flag), and only after it commits is
a worker told to send it. A lost message, a dead worker or a restart therefore loses
nothing: the periodic dispatcher finds every pending delivery that is due.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import structlog
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent, Run, RunEvent
from agents.runtime.events import envelope_of
from core.errors import ApplicationError
from core.permissions import has_perms
from core.safe_http import (
    RequestFailed,
    RequestRefused,
    safe_request,
)
from secrets_vault.reveal_services import secret_reveal
from webhooks.endpoint_services import PRIVATE_NETWORKS_SETTING
from webhooks.models import (
    RUN_EVENT_TYPES,
    TEST_EVENT_TYPE,
    BudgetAlert,
    WebhookDelivery,
    WebhookEndpoint,
)
from webhooks.signing import signature_headers

log = structlog.get_logger(__name__)

USER_AGENT = "Switchyard-Webhooks/1.0"
MAX_RESPONSE_BYTES = 4096
EXCERPT_CHARS = 500
BUDGET_THRESHOLDS = (80, 100)
# Short waits are kept by the worker (a countdown, a timer); longer ones by the dispatcher.
DOORBELL_MAX_DELAY_S = 60.0


# --- Endpoints --------------------------------------------------------------------------


# --- Fan-out ----------------------------------------------------------------------------


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _payload(event_type: str, data: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    at = at or timezone.now()
    return {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data}


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.6f}"


def run_summary(run: Run) -> dict[str, Any]:
    """What a receiver needs to act on a finished run, without another API call."""
    return {
        "id": str(run.id),
        "agent": run.agent.slug,
        "owner": run.owner.get_username() if run.owner_id else None,
        "status": run.status,
        "thread": str(run.thread_id) if run.thread_id else None,
        "output": run.output,
        "error": {"code": run.error_code, "message": run.error_message} if run.error_code else None,
        "usage": {
            "requests": run.requests,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "tool_calls": run.tool_calls,
            "cost_usd": _money(run.cost_usd),
        },
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _subscribers(
    event_type: str, *, agent_id: int | None, owner_id: int | None, perm: str
) -> list[WebhookEndpoint]:
    """Active endpoints that want ``event_type`` for this agent and may see it: their
    owner's own runs, or every run with ``perm``. Endpoints are few: filtered here, which
    works alike on PostgreSQL and SQLite (no JSON containment lookups)."""
    candidates = WebhookEndpoint.objects.filter(is_active=True).select_related("owner")
    wanted = []
    for endpoint in candidates:
        if event_type not in endpoint.events:
            continue
        if endpoint.agent_id is not None and endpoint.agent_id != agent_id:
            continue
        if endpoint.owner_id != owner_id and not has_perms(endpoint.owner, perm):
            continue
        wanted.append(endpoint)
    return wanted


def _store(
    endpoints: Iterable[WebhookEndpoint],
    event_type: str,
    payload: dict[str, Any],
    run_id: uuid.UUID | None = None,
) -> list[WebhookDelivery]:
    now = timezone.now()
    rows = [
        WebhookDelivery(
            endpoint=endpoint,
            event_type=event_type,
            message_id=_message_id(),
            payload=payload,
            run_id=run_id,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    ]
    if not rows:
        return []
    stored = WebhookDelivery.objects.bulk_create(rows)
    ids = [d.pk for d in stored]
    transaction.on_commit(lambda: dispatch(ids))
    return stored


def deliveries_for_run_finished(*, run_id: uuid.UUID, event: RunEvent) -> list[WebhookDelivery]:
    """Called in the terminal transaction: one delivery per subscribed endpoint, and the
    agent's budget thresholds checked."""
    if event.type not in RUN_EVENT_TYPES:
        return []
    if not WebhookEndpoint.objects.filter(is_active=True).exists():
        return []  # the common case costs one indexed query
    run = Run.objects.select_related("agent", "owner").get(pk=run_id)
    endpoints = _subscribers(
        event.type, agent_id=run.agent_id, owner_id=run.owner_id, perm="agents.view_run"
    )
    payload = _payload(event.type, {"run": run_summary(run), "event": envelope_of(event)})
    stored = _store(endpoints, event.type, payload, run_id=run.id)
    return stored + budget_thresholds_check(agent=run.agent)


def budget_thresholds_check(*, agent: Agent) -> list[WebhookDelivery]:
    """Announce each of 80 % and 100 % of the monthly budget once per month, to endpoints
    whose owner may change agents (operators)."""
    if agent.monthly_budget_usd is None or agent.monthly_budget_usd <= 0:
        return []
    from agents.services import agent_month_spend, month_start

    spent = agent_month_spend(agent.pk)
    used = spent / agent.monthly_budget_usd * 100
    month: date = month_start().date()
    stored: list[WebhookDelivery] = []
    for threshold in BUDGET_THRESHOLDS:
        if used < threshold:
            continue
        try:
            with transaction.atomic():
                BudgetAlert.objects.create(agent=agent, month=month, threshold=threshold)
        except IntegrityError:
            continue  # announced already this month
        endpoints = _subscribers(
            "budget.threshold", agent_id=agent.pk, owner_id=None, perm="agents.change_agent"
        )
        data = {
            "agent": agent.slug,
            "threshold_percent": threshold,
            "month": month.strftime("%Y-%m"),
            "budget_usd": _money(agent.monthly_budget_usd),
            "spent_usd": _money(spent),
        }
        stored += _store(endpoints, "budget.threshold", _payload("budget.threshold", data))
    return stored


def deliveries_for_flags(*, flags: Sequence[Any]) -> list[WebhookDelivery]:
    if not flags or not WebhookEndpoint.objects.filter(is_active=True).exists():
        return []
    stored: list[WebhookDelivery] = []
    owners = dict(
        Run.objects.filter(pk__in={f.run_id for f in flags}).values_list("pk", "owner_id")
    )
    for flag in flags:
        endpoints = _subscribers(
            "moderation.flagged",
            agent_id=flag.agent_id,
            owner_id=owners.get(flag.run_id),
            perm="moderation.view_flag",
        )
        data = {
            "flag": {
                "id": str(flag.pk),
                "run": str(flag.run_id),
                "agent_id": flag.agent_id,
                "stage": flag.stage,
                "rule": flag.rule_name,
                "kind": flag.kind,
                "action": flag.action,
                "severity": flag.severity,
            }
        }
        stored += _store(
            endpoints, "moderation.flagged", _payload("moderation.flagged", data), flag.run_id
        )
    return stored


def delivery_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A ``webhook.test`` delivery, to check a receiver and its signature verification."""
    data = {"endpoint": str(endpoint.id), "message": "A test delivery from Switchyard."}
    with transaction.atomic():
        (delivery,) = _store([endpoint], TEST_EVENT_TYPE, _payload(TEST_EVENT_TYPE, data))
    return delivery


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again, with the same ``webhook-id`` (receivers de-duplicate)."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=timezone.now(),
            locked_until=None,
        )
        ids = [delivery.pk]
        transaction.on_commit(lambda: dispatch(ids))
    delivery.refresh_from_db()
    return delivery


# --- Attempts ---------------------------------------------------------------------------


def retry_schedule() -> list[float]:
    """Seconds to wait before each attempt after the first (WEBHOOK_RETRY_SCHEDULE_S)."""
    return [float(s) for s in settings.WEBHOOK_RETRY_SCHEDULE_S]


def _next_delay(attempts: int) -> float | None:
    """The wait before attempt ``attempts + 1`` (jittered ±20 %), or None when given up."""
    schedule = retry_schedule()
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return base * random.uniform(0.8, 1.2)


def _claim(delivery_id: uuid.UUID) -> bool:
    now = timezone.now()
    lease = timedelta(seconds=float(settings.WEBHOOK_TIMEOUT_S) + 30)
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id,
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=now + lease)
    )


def _signing_secrets(endpoint: WebhookEndpoint, delivery_id: uuid.UUID) -> list[str]:
    purpose = f"webhook delivery {delivery_id}"
    names = [secret_reveal(name=endpoint.secret_name, purpose=purpose, actor=None)]
    until = endpoint.previous_secret_valid_until
    if endpoint.previous_secret_version and until and until > timezone.now():
        try:
            names.append(
                secret_reveal(
                    name=endpoint.secret_name,
                    purpose=purpose,
                    actor=None,
                    version=endpoint.previous_secret_version,
                )
            )
        except ApplicationError:
            pass  # the old version was disabled or pruned: sign with the new one alone
    return [s.reveal() for s in names]


def _send(url: str, body: str, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """POST once, no redirects, under the webhook network policy. Returns (status, error,
    response excerpt)."""
    host = httpx.URL(url).host
    try:
        response = asyncio.run(
            safe_request(
                "POST",
                url,
                allowed_hosts=[host],
                headers={**headers, "content-type": "application/json", "user-agent": USER_AGENT},
                content=body.encode(),
                timeout_s=float(settings.WEBHOOK_TIMEOUT_S),
                max_bytes=MAX_RESPONSE_BYTES,
                follow_redirects=False,
                private_networks_setting=PRIVATE_NETWORKS_SETTING,
            )
        )
    except RequestRefused as exc:
        return None, f"refused: {exc}"[:300], ""
    except RequestFailed as exc:
        return None, str(exc)[:300], ""
    excerpt = response.content[:EXCERPT_CHARS].decode("utf-8", "replace")
    if 200 <= response.status_code < 300:
        return response.status_code, "", excerpt
    if 300 <= response.status_code < 400:
        return response.status_code, f"HTTP {response.status_code}: redirects are not followed", ""
    return response.status_code, f"HTTP {response.status_code}", excerpt


def delivery_attempt(*, delivery_id: uuid.UUID) -> str | None:
    """Make one attempt of a due delivery, if no one else is making it. Returns the
    delivery's status afterwards, or None when it was not due or taken by someone else."""
    if not _claim(delivery_id):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    now = timezone.now()
    if not endpoint.is_active:
        _record(delivery, status=None, error="the endpoint is disabled", excerpt="", final=True)
        return delivery.status
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    headers = signature_headers(
        message_id=delivery.message_id,
        timestamp=now,
        body=body,
        secrets_=_signing_secrets(endpoint, delivery.pk),
    )
    status, error, excerpt = _send(endpoint.url, body, headers)
    refused = error.startswith("refused:")
    _record(delivery, status=status, error=error, excerpt=excerpt, final=refused)
    log.info(
        "webhook_attempt",
        delivery=str(delivery.pk),
        endpoint=str(endpoint.pk),
        event_type=delivery.event_type,
        attempt=delivery.attempts,
        status_code=status,
        outcome=delivery.status,
        error=error or None,
    )
    return delivery.status


def _record(
    delivery: WebhookDelivery, *, status: int | None, error: str, excerpt: str, final: bool
) -> None:
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = status
    delivery.last_error = error
    delivery.response_excerpt = excerpt
    delivery.locked_until = None
    endpoint = delivery.endpoint
    delay: float | None = None
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        endpoint.consecutive_failures = 0
    else:
        endpoint.consecutive_failures += 1
        delay = None if final else _next_delay(delivery.attempts)
        if delay is None:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
    with transaction.atomic():
        delivery.save()
        fields = ["consecutive_failures"]
        if delivery.status == WebhookDelivery.Status.FAILED and endpoint.is_active:
            endpoint.is_active = False
            endpoint.disabled_at = now
            endpoint.disabled_reason = (
                f"Disabled after delivery {delivery.pk} failed {delivery.attempts} "
                f"time(s); last error: {error}"
            )[:300]
            fields += ["is_active", "disabled_at", "disabled_reason"]
            log.warning("webhook_endpoint_disabled", endpoint=str(endpoint.pk), error=error)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            **{f: getattr(endpoint, f) for f in fields}
        )
    if delay is not None and delay <= DOORBELL_MAX_DELAY_S:
        dispatch([delivery.pk], delay_s=delay)


# --- Dispatch ---------------------------------------------------------------------------


_senders: ThreadPoolExecutor | None = None
_senders_lock = threading.Lock()
# Set in a Celery worker process (webhooks.apps): a run's terminal commit happens there,
# and its deliveries are sent from there at once, not queued behind the runs.
in_worker = False


def _sender_pool() -> ThreadPoolExecutor:
    global _senders
    with _senders_lock:
        if _senders is None:
            _senders = ThreadPoolExecutor(
                max_workers=settings.WEBHOOK_SENDERS, thread_name_prefix="webhook-sender"
            )
        return _senders


def _attempt_in_thread(delivery_id: uuid.UUID) -> None:
    try:
        delivery_attempt(delivery_id=delivery_id)
    except Exception:
        log.exception("webhook_attempt_crashed", delivery=str(delivery_id))
    finally:
        close_old_connections()  # this thread's connection goes back; the pool thread stays


def _send_locally(delivery_ids: Sequence[uuid.UUID]) -> None:
    pool = _sender_pool()
    for pk in delivery_ids:
        pool.submit(_attempt_in_thread, pk)


def dispatch(delivery_ids: Sequence[uuid.UUID], *, delay_s: float = 0.0) -> None:
    """Ring the doorbell for these deliveries. In a Celery worker and in the embedded
    server they are sent from a small pool of sender threads of this process (at once,
    and a slow receiver holds one sender, never a run); a web process of the distributed
    mode hands them to Celery. Losing the doorbell loses nothing (see
    ``deliveries_dispatch_due``)."""
    if not delivery_ids:
        return
    ids = list(delivery_ids)
    if settings.RUN_EXECUTOR == "celery" and not in_worker:
        from webhooks.tasks import deliver_webhook_task

        for pk in ids:
            deliver_webhook_task.apply_async((str(pk),), countdown=delay_s or None)
        return
    if delay_s <= 0:
        _send_locally(ids)
        return
    timer = threading.Timer(delay_s, _send_locally, args=(ids,))
    timer.daemon = True
    timer.start()


def deliveries_dispatch_due(*, limit: int = 200) -> int:
    """Every pending delivery that is due and not being attempted: the safety net behind
    the doorbells, run by Celery beat (or the embedded server's periodic loop)."""
    now = timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    dispatch(due)
    return len(due)
