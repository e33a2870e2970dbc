"""Writes and business rules for agents and runs.

Side effects (publishing an event, enqueueing a run) happen only after the transaction
that made them true has committed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from agents import signals
from agents.agent_services import agent_version_current
from agents.lifecycle import EVENT_FOR_STATUS, TERMINAL, RunStatus, sources_of
from agents.models import Agent, ModelCall, Run, RunEvent, Thread
from agents.runtime.events import envelope_of, next_seq_sync, publish_sync
from core.errors import (
    ApplicationError,
    ConflictError,
    QuotaExhaustedError,
    UnprocessableError,
)
from monitoring import metrics

log = structlog.get_logger(__name__)


LIMIT_FIELDS = (
    "max_requests",
    "max_tool_calls",
    "max_input_tokens",
    "max_output_tokens",
    "max_cost_usd",
    "timeout_s",
)


def agent_limits(agent: Agent) -> dict[str, Any]:
    limits = {name: getattr(agent, name) for name in LIMIT_FIELDS}
    if limits["max_cost_usd"] is not None:
        limits["max_cost_usd"] = str(limits["max_cost_usd"])
    return limits


def merge_limits(ceiling: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    """Per-run limits may lower the agent's, never raise them.

    Every limit but ``max_cost_usd`` is a whole number (a JSON integer, not 0.5 truncated
    to 0, not "5", not true); the cost a finite decimal. Each must be positive and at most
    the agent's. Anything else is an ``invalid_limits`` error naming the limit.
    """
    unknown = sorted(set(requested) - set(LIMIT_FIELDS))
    if unknown:
        raise ApplicationError(
            "invalid_limits",
            f"Unknown limits: {', '.join(unknown)}.",
            details={"known": list(LIMIT_FIELDS)},
        )
    merged = dict(ceiling)
    for name, value in requested.items():
        wanted = _limit_value(name, value)
        cap = ceiling.get(name)
        if cap is not None and wanted > Decimal(str(cap)):
            raise ApplicationError(
                "invalid_limits",
                f"{name} may not exceed the agent's {cap}.",
                details={"limit": name},
            )
        merged[name] = str(wanted) if name == "max_cost_usd" else int(wanted)
    return merged


def _limit_value(name: str, value: Any) -> Decimal:
    def invalid(why: str) -> ApplicationError:
        return ApplicationError("invalid_limits", f"{name} {why}.", details={"limit": name})

    if name == "max_cost_usd":
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise invalid("must be a number")
        try:
            wanted = Decimal(str(value))
        except ArithmeticError:
            raise invalid("must be a number") from None
        if not wanted.is_finite():
            raise invalid("must be a finite number")
    elif isinstance(value, bool) or not isinstance(value, int):
        raise invalid("must be a whole number")
    else:
        wanted = Decimal(value)
    if wanted <= 0:
        raise invalid("must be positive")
    return wanted


def agent_config_snapshot(agent: Agent) -> dict[str, Any]:
    """What a run needs of its agent, frozen at creation so later edits don't leak in."""
    provider = agent.provider
    secret = getattr(provider, "api_key", None)
    return {
        "agent_version": agent.version,
        "provider": {
            "id": provider.pk,
            "kind": provider.kind,
            "base_url": provider.base_url,
            "timeout_s": provider.timeout_s,
            "max_retries": provider.max_retries,
            "extra_headers": provider.extra_headers,
            # The secret's name, never its value: the executor reveals it at run start.
            "api_key_secret": secret.name if secret is not None else None,
        },
        "model_name": agent.model_name,
        "instructions": agent.instructions,
        "tools": list(agent.tools),
        "tool_config": dict(agent.tool_config),
        "model_settings": dict(agent.model_settings),
        "moderation_policy_id": agent.moderation_policy_id,
        "limits": agent_limits(agent),
    }


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def agent_month_spend(agent_id: int) -> Decimal:
    """What the agent's model calls cost since the start of the month (UTC)."""
    total = ModelCall.objects.filter(agent_id=agent_id, created_at__gte=month_start()).aggregate(
        total=Sum("cost_usd")
    )["total"]
    return total or Decimal(0)


def run_create(
    *,
    agent: Agent,
    owner: AbstractBaseUser,
    input: str,  # noqa: A002 - the API field is called input
    idempotency_key: str | None = None,
    limits: dict[str, Any] | None = None,
    thread: Thread | None = None,
    parent: Run | None = None,
    enqueue: bool = True,
    history: list[dict[str, str]] | None = None,
    extra_instructions: str = "",
    model_settings: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> tuple[Run, bool]:
    """Create a queued run and hand it to the executor once committed.

    Returns ``(run, created)``; with an ``idempotency_key`` the owner already used, the
    existing run comes back with ``created=False``, also under concurrent duplicates.

    ``history`` (``[{"role": "user" | "assistant", "content": str}]``) is conversation the
    caller brings along (the OpenAI-compatible API's earlier messages), replayed after the
    thread's. ``extra_instructions`` are added after the agent's, which stay in force.
    ``model_settings`` override the agent's for this run (the caller checked them against
    the agent's limits). ``client`` is what the caller wants remembered with the run.
    """
    if not agent.is_active:
        raise ConflictError("agent_inactive", f"Agent '{agent.slug}' is not active.")
    if len(input) > settings.RUN_MAX_INPUT_CHARS:
        raise ApplicationError(
            "input_too_long",
            f"input is {len(input)} characters; the limit is {settings.RUN_MAX_INPUT_CHARS}.",
        )
    fingerprint = ""
    if idempotency_key:
        fingerprint = run_request_fingerprint(
            agent=agent,
            input=input,
            limits=limits,
            thread=thread,
            parent=parent,
            history=history,
            extra_instructions=extra_instructions,
            model_settings=model_settings,
        )
        existing = Run.objects.filter(owner_id=owner.pk, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, fingerprint), False
    if thread is not None and thread.agent_id != agent.pk:
        raise ApplicationError("thread_agent_mismatch", "The thread belongs to another agent.")
    version = agent_version_current(agent)
    config = agent_config_snapshot(agent)
    config["agent_version"] = version.number
    config["limits"] = merge_limits(config["limits"], limits or {})
    if extra_instructions:
        config["instructions"] = "\n\n".join(
            part for part in (config["instructions"], extra_instructions) if part
        )
    if model_settings:
        config["model_settings"] = {**config["model_settings"], **model_settings}
    if history:
        config["history"] = history
    if client:
        config["client"] = client
    if (
        agent.monthly_budget_usd is not None
        and agent_month_spend(agent.pk) >= agent.monthly_budget_usd
    ):
        raise QuotaExhaustedError(
            "budget_exhausted",
            f"Agent '{agent.slug}' has spent its monthly budget of ${agent.monthly_budget_usd}.",
        )
    try:
        with transaction.atomic():
            # django-stubs types the key as User; callers hold request.user's AbstractBaseUser.
            run = Run.objects.create(  # type: ignore[misc]
                agent=agent,
                owner=owner,
                input=input,
                config=config,
                agent_version=version,
                # What the caller asked for, as validated (JSON-safe: the cost a string).
                limits={name: config["limits"][name] for name in limits or {}},
                thread=thread,
                parent=parent,
                depth=(parent.depth + 1) if parent else 0,
                idempotency_key=idempotency_key or None,
                idempotency_fingerprint=fingerprint,
            )
            RunEvent.objects.create(
                run=run, seq=1, type="run.queued", data={}, created_at=run.created_at
            )
            transaction.on_commit(lambda: _after_create(run, enqueue=enqueue))
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the insert; return its run.
        existing = Run.objects.get(owner_id=owner.pk, idempotency_key=idempotency_key)
        return _idempotent_replay(existing, fingerprint), False
    return run, True


def run_request_fingerprint(
    *,
    agent: Agent,
    input: str,  # noqa: A002 - the API field is called input
    limits: dict[str, Any] | None,
    thread: Thread | None,
    parent: Run | None,
    history: list[dict[str, str]] | None,
    extra_instructions: str,
    model_settings: dict[str, Any] | None,
) -> str:
    """SHA-256 of what was asked for, in canonical JSON: two requests under one
    Idempotency-Key are the same request when this matches (key order and whitespace of
    the body do not count; every value does)."""
    asked = {
        "agent": agent.slug,
        "input": input,
        "limits": limits or {},
        "thread": str(thread.pk) if thread else None,
        "parent": str(parent.pk) if parent else None,
        "history": history or [],
        "extra_instructions": extra_instructions,
        "model_settings": model_settings or {},
    }
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotent_replay(existing: Run, fingerprint: str) -> Run:
    """The run an Idempotency-Key already made, if this request is the same one; a reuse
    with another body is refused (IETF Idempotency-Key draft, Stripe). Runs stored before
    fingerprints were kept have none and are returned as before."""
    if existing.idempotency_fingerprint and existing.idempotency_fingerprint != fingerprint:
        raise UnprocessableError(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request; use a new key.",
            details={"run": str(existing.pk)},
        )
    return existing


def _after_create(run: Run, *, enqueue: bool) -> None:
    """``run.queued`` is stored but not published: the run's id is new (uuid4), so
    nobody can be subscribed to its stream yet; a subscriber reads it from the log."""
    metrics.runs_created.labels(agent=run.agent.slug).inc()
    if enqueue:  # a delegated child run is executed by its parent, inline
        run_hand_over(run_id=run.id)
    else:
        Run.objects.filter(pk=run.id).update(dispatched_at=timezone.now())


def run_hand_over(*, run_id: uuid.UUID) -> bool:
    """Give a queued run to its executor and mark it handed over; False if the broker
    refused the message.

    The committed run row is the source of truth, the broker message only a doorbell: a
    refused message leaves ``dispatched_at`` empty and ``runs_dispatch`` rings again once
    the broker answers. Ringing twice is harmless, since starting a run is a conditional
    UPDATE that only one delivery wins.
    """
    from agents.runtime.executors import BROKER_ERRORS, enqueue_run

    try:
        enqueue_run(run_id)
    except BROKER_ERRORS as exc:
        log.warning("run_hand_over_failed", run_id=str(run_id), error=f"{type(exc).__name__}")
        metrics.run_hand_over_failures.inc()
        return False
    Run.objects.filter(pk=run_id, dispatched_at__isnull=True).update(dispatched_at=timezone.now())
    return True


def runs_dispatch(*, older_than_s: float | None = None, limit: int = 100) -> int:
    """Hand over queued runs whose hand-over failed; returns how many went.

    Only runs older than ``older_than_s`` (their own request may still be handing them
    over), oldest first, locked with SKIP LOCKED so that several dispatchers (one per
    server process) never ring for the same run at once. Stops at the first refusal: the
    broker is still down and the rest would only wait out the same timeout.
    """
    grace = settings.DISPATCH_GRACE_S if older_than_s is None else older_than_s
    cutoff = timezone.now() - timedelta(seconds=grace)
    sent = 0
    with transaction.atomic():
        owed = (
            Run.objects.select_for_update(skip_locked=True)
            .filter(status=RunStatus.QUEUED, dispatched_at__isnull=True, created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        for run_id in list(owed):
            if not run_hand_over(run_id=run_id):
                break
            sent += 1
    return sent


def run_transition(
    *,
    run_id: uuid.UUID,
    to: str,
    event_data: dict[str, Any] | None = None,
    seq: int | None = None,
    publish: bool = True,
    only_if: dict[str, Any] | None = None,
    **fields: Any,
) -> RunEvent | None:
    """Move a run to ``to`` if its current status allows it; the one writer of status.

    A conditional UPDATE (``WHERE status IN sources``) decides races: of two writers,
    exactly one wins. The winner appends the matching event in the same transaction.
    Returns that event, or ``None`` when the run was not in a source state (or did not
    match ``only_if``, further lookups such as the attempt a decision was made about).
    ``seq`` is given by an executor that owns the run's numbering; others use the log.
    """
    sources = sources_of(to)
    now = timezone.now()
    if to in TERMINAL:
        fields.setdefault("finished_at", now)
    # No savepoint when called inside the caller's transaction (claim, finish): one round
    # trip fewer, and a failure rolls back the caller's work too, which is what it wants.
    with transaction.atomic(savepoint=False):
        matching = Run.objects.filter(pk=run_id, status__in=sources, **(only_if or {}))
        updated = matching.update(status=to, **fields)
        if not updated:
            return None
        event_type = EVENT_FOR_STATUS.get(to)
        event = None
        if event_type is not None:
            event = RunEvent.objects.create(
                run_id=run_id,
                seq=seq if seq is not None else next_seq_sync(run_id),
                type=event_type,
                data=event_data or {},
                created_at=now,
            )
            if publish:
                envelope = envelope_of(event)
                transaction.on_commit(lambda: publish_sync(run_id, [envelope]))
            if to in TERMINAL:
                signals.run_finished.send(sender=Run, run_id=run_id, event=event)
    metrics.run_transitions.labels(status=to).inc()
    return event


def run_cancel(*, run_id: uuid.UUID, actor: AbstractBaseUser | None = None) -> str:
    """Request that a run stop. Idempotent.

    A queued run is cancelled at once. A running one moves to ``cancelling`` and its
    executor confirms (``cancelled``) after aborting the model stream and tools.
    Returns the status after the call; a run that already finished otherwise is a 409.
    """
    if run_transition(run_id=run_id, to=RunStatus.CANCELLED, error_code="cancelled"):
        return RunStatus.CANCELLED
    run_transition(run_id=run_id, to=RunStatus.CANCELLING, cancel_requested_at=timezone.now())
    current = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    if current in {RunStatus.CANCELLING, RunStatus.CANCELLED}:
        return current
    raise ConflictError("run_finished", f"The run already ended with status '{current}'.")


def _attempt_output_from(run_id: uuid.UUID) -> int | None:
    """The first seq of the lost attempt's output (after its ``run.started``): clients drop
    events from there up to ``run.retrying``, so text is never shown twice."""
    started = (
        RunEvent.objects.filter(run_id=run_id, type="run.started")
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return None if started is None else started + 1


def runs_reap(
    *, stale_after_s: float | None = None, max_attempts: int | None = None
) -> dict[str, int]:
    """Settle runs whose executor stopped proving it is alive.

    A running run with a stale heartbeat is re-queued (``run.retrying``) while attempts
    remain, else failed with ``worker_lost``; a stale ``cancelling`` run is cancelled;
    a queued run whose message is lost (handed over more than ``RUN_RESEND_AFTER_S``
    ago) is handed to the executor again (starting it is idempotent, so a duplicate
    delivery does nothing).
    """
    stale_after_s = stale_after_s or settings.RUN_STALE_AFTER_S
    max_attempts = max_attempts or settings.RUN_MAX_ATTEMPTS
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "kicked": 0}
    stale = Run.objects.filter(heartbeat_at__lt=cutoff)
    for run_id, attempt in stale.filter(status=RunStatus.RUNNING).values_list("pk", "attempt"):
        if attempt < max_attempts:
            # A requeue that finds the run no longer running lost a race (another reaper
            # pass, say, after a database stall held several back): nothing to do. It must
            # not fall through to failing the run, which is only for spent attempts.
            if run_transition(
                run_id=run_id,
                to=RunStatus.QUEUED,
                event_data={
                    "attempt": attempt + 1,
                    "discard_from_seq": _attempt_output_from(run_id),
                },
                dispatched_at=None,  # owed again; the dispatcher retries if this fails
                # the attempt judged stale, still stale: not a later attempt meanwhile claimed
                only_if={"attempt": attempt, "heartbeat_at__lt": cutoff},
            ):
                transaction.on_commit(functools.partial(run_hand_over, run_id=run_id))
                counts["requeued"] += 1
        elif run_transition(
            run_id=run_id,
            to=RunStatus.FAILED,
            error_code="worker_lost",
            error_message=f"The worker stopped after {attempt} attempt(s).",
            only_if={"attempt": attempt, "heartbeat_at__lt": cutoff},
            event_data={
                "error": {
                    "code": "worker_lost",
                    "message": "The worker executing the run was lost.",
                }
            },
        ):
            counts["failed"] += 1
    for run_id in stale.filter(status=RunStatus.CANCELLING).values_list("pk", flat=True):
        if run_transition(run_id=run_id, to=RunStatus.CANCELLED, error_code="cancelled"):
            counts["cancelled"] += 1
    # A handed-over message is acknowledged only once its run is claimed, and the broker
    # gives back what a dead worker held after BROKER_VISIBILITY_TIMEOUT_S; a queued run
    # handed over longer ago than that has really lost its message (a flushed or
    # restarted Redis). Younger ones are still in the queue or held: sending them again
    # only fills the broker with duplicates.
    resend_before = timezone.now() - timedelta(seconds=settings.RUN_RESEND_AFTER_S)
    forgotten = Run.objects.filter(status=RunStatus.QUEUED, dispatched_at__lt=resend_before)
    for run_id in forgotten.order_by("dispatched_at").values_list("pk", flat=True)[:100]:
        if not run_hand_over(run_id=run_id):
            break
        Run.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
        counts["kicked"] += 1
    return counts
