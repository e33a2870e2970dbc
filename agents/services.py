"""Writes and business rules for agents and runs.

Side effects (publishing an event, enqueueing a run) happen only after the transaction
that made them true has committed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from agents import signals
from agents.agent_services import agent_version_current
from agents.lifecycle import EVENT_FOR_STATUS, TERMINAL, UNFINISHED, RunStatus, sources_of
from agents.models import (
    Agent,
    AgentVersion,
    ModelCall,
    Run,
    RunBatch,
    RunEvent,
    RunQuota,
    Thread,
)
from agents.runtime.events import envelope_of, next_seq_sync, publish_sync
from core.errors import (
    ApplicationError,
    ConflictError,
    QuotaExhaustedError,
    RateLimitedError,
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


# The first key of the advisory lock that serializes one owner's run creations (the
# second is the owner's id): "SY" in ASCII, apart from any other lock of the database.
QUOTA_LOCK_CLASS = 0x5359


def owner_run_limit(owner_id: Any) -> int:
    """How many runs the owner may have queued or running at once; 0 is unlimited."""
    override = (
        RunQuota.objects.filter(user_id=owner_id).values_list("max_active_runs", flat=True).first()
    )
    return settings.RUNS_MAX_ACTIVE_PER_OWNER if override is None else override


def reserve_run_slots(owner_id: Any, count: int) -> None:
    """Refuse ``count`` more runs of the owner beyond its limit (429 ``too_many_runs``).

    Call inside the transaction that inserts the runs. A count and an insert alone would
    race: two creates at limit - 1 both count limit - 1 and both insert, and a burst of N
    concurrent creates could overshoot by N. A transaction-level advisory lock per owner
    makes count-then-insert one step until the commit, so the limit is exact across every
    server process. It serializes one owner's creates only (a few milliseconds each: the
    insert and the commit), never different owners'; SQLite's IMMEDIATE transactions
    already serialize every writer, so it needs no lock.
    """
    limit = owner_run_limit(owner_id)
    if not limit:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [QUOTA_LOCK_CLASS, owner_id])
    # An index-only count (run_owner_unfinished_idx): an owner's unfinished runs, no more.
    active = Run.objects.filter(owner_id=owner_id, status__in=UNFINISHED).count()
    if active + count > limit:
        wanted = "a run" if count == 1 else f"{count} runs"
        raise RateLimitedError(
            "too_many_runs",
            f"You have {active} runs queued or running, the limit is {limit}: "
            f"{wanted} more would exceed it. Retry when some have finished.",
            retry_after=settings.RUNS_QUOTA_RETRY_AFTER_S,
            details={"limit": limit, "active": active, "requested": count},
        )


def _check_active(agent: Agent) -> None:
    if not agent.is_active:
        raise ConflictError("agent_inactive", f"Agent '{agent.slug}' is not active.")


def _check_input(text: str) -> None:
    if len(text) > settings.RUN_MAX_INPUT_CHARS:
        raise ApplicationError(
            "input_too_long",
            f"input is {len(text)} characters; the limit is {settings.RUN_MAX_INPUT_CHARS}.",
        )


def _check_thread(agent: Agent, thread: Thread | None) -> None:
    if thread is not None and thread.agent_id != agent.pk:
        raise ApplicationError("thread_agent_mismatch", "The thread belongs to another agent.")


def _check_budget(agent: Agent) -> None:
    if (
        agent.monthly_budget_usd is not None
        and agent_month_spend(agent.pk) >= agent.monthly_budget_usd
    ):
        raise QuotaExhaustedError(
            "budget_exhausted",
            f"Agent '{agent.slug}' has spent its monthly budget of ${agent.monthly_budget_usd}.",
        )


def agent_run_base(agent: Agent) -> tuple[AgentVersion, dict[str, Any]]:
    """The agent's current version and the configuration snapshot its runs start from
    (once per request, also for a batch of many runs)."""
    # Only its key and number: the run points at the version, and the snapshot of the
    # version's whole config (a JSON document read on every create) is not needed here.
    version = agent.versions.only("pk", "number").filter(number=agent.version).first()
    if version is None:
        version = agent_version_current(agent)
    config = agent_config_snapshot(agent)
    config["agent_version"] = version.number
    return version, config


def run_config(
    base: dict[str, Any],
    *,
    limits: dict[str, Any] | None = None,
    extra_instructions: str = "",
    model_settings: dict[str, Any] | None = None,
    history: list[dict[str, str]] | None = None,
    client: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run's configuration: the agent's snapshot with this run's requests applied."""
    config = dict(base)
    config["limits"] = merge_limits(base["limits"], limits or {})
    if extra_instructions:
        config["instructions"] = "\n\n".join(
            part for part in (base["instructions"], extra_instructions) if part
        )
    if model_settings:
        config["model_settings"] = {**base["model_settings"], **model_settings}
    if history:
        config["history"] = history
    if client:
        config["client"] = client
    return config


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
    _check_active(agent)
    _check_input(input)
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
    _check_thread(agent, thread)
    version, base = agent_run_base(agent)
    config = run_config(
        base,
        limits=limits,
        extra_instructions=extra_instructions,
        model_settings=model_settings,
        history=history,
        client=client,
    )
    _check_budget(agent)
    try:
        with transaction.atomic():
            if parent is None:
                # A delegated child run is part of its parent's work, which already counts:
                # refusing it would fail a run that is halfway done.
                reserve_run_slots(owner.pk, 1)
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


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch, as the API validated it (``thread`` is the id asked for)."""

    input: str
    thread: uuid.UUID | None = None
    limits: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


def run_batch_create(
    *,
    agent: Agent,
    owner: AbstractBaseUser,
    items: list[BatchItem],
    idempotency_key: str | None = None,
) -> tuple[list[uuid.UUID], bool]:
    """Create the runs of ``items`` whole or not at all; returns their ids in input order
    and whether they were created now (``False``: an Idempotency-Key replay).

    Every item is checked as a single create checks its request (input length, thread,
    limits) and every refusal is reported at once, keyed by its path (``inputs[3].thread``);
    the owner's quota counts the whole batch. The runs and their ``run.queued`` events are
    two bulk inserts in one transaction, and the runs go to the broker after the commit
    over one producer (``runs_hand_over``).
    """
    _check_active(agent)
    fingerprint = ""
    if idempotency_key:
        fingerprint = run_batch_fingerprint(agent=agent, items=items)
        existing = RunBatch.objects.filter(owner_id=owner.pk, idempotency_key=idempotency_key)
        replay = existing.first()
        if replay is not None:
            return _batch_replay(replay, fingerprint), False
    threads = _batch_threads(owner, items)
    version, base = agent_run_base(agent)
    runs: list[Run] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        path = f"inputs[{index}]"
        try:
            runs.append(_batch_run(agent, owner, version, base, item, threads, path))
        except _ItemError as exc:
            errors.setdefault(exc.path, []).append(exc.message)
    if errors:
        raise ApplicationError(
            "invalid_request", "Some inputs are not valid; see details.", details=errors
        )
    _check_budget(agent)
    try:
        with transaction.atomic():
            reserve_run_slots(owner.pk, len(runs))
            if idempotency_key:
                RunBatch.objects.create(  # type: ignore[misc]
                    owner=owner,
                    idempotency_key=idempotency_key,
                    idempotency_fingerprint=fingerprint,
                    run_ids=[str(run.pk) for run in runs],
                )
            Run.objects.bulk_create(runs, batch_size=BATCH_INSERT_ROWS)
            RunEvent.objects.bulk_create(
                [
                    RunEvent(run=run, seq=1, type="run.queued", data={}, created_at=run.created_at)
                    for run in runs
                ],
                batch_size=BATCH_INSERT_ROWS,
            )
            ids = [run.pk for run in runs]
            transaction.on_commit(functools.partial(_after_batch_create, agent.slug, ids))
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the insert; return its runs.
        won = RunBatch.objects.get(owner_id=owner.pk, idempotency_key=idempotency_key)
        return _batch_replay(won, fingerprint), False
    return ids, True


# Rows per INSERT statement: a run has ~30 columns, and PostgreSQL takes at most 65,535
# parameters in one statement.
BATCH_INSERT_ROWS = 500


class _ItemError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _batch_threads(owner: AbstractBaseUser, items: list[BatchItem]) -> dict[uuid.UUID, Thread]:
    """The caller's threads the batch names, in one query."""
    wanted = {item.thread for item in items if item.thread is not None}
    if not wanted:
        return {}
    return {t.pk: t for t in Thread.objects.filter(pk__in=wanted, owner_id=owner.pk)}


def _batch_run(
    agent: Agent,
    owner: AbstractBaseUser,
    version: AgentVersion,
    base: dict[str, Any],
    item: BatchItem,
    threads: dict[uuid.UUID, Thread],
    path: str,
) -> Run:
    """One item's unsaved run, or an ``_ItemError`` at the path of what is wrong."""
    try:
        _check_input(item.input)
    except ApplicationError as exc:
        raise _ItemError(f"{path}.input", exc.message) from None
    thread = None
    if item.thread is not None:
        thread = threads.get(item.thread)
        if thread is None:
            raise _ItemError(f"{path}.thread", "No such thread.")
        if thread.agent_id != agent.pk:
            raise _ItemError(f"{path}.thread", "The thread belongs to another agent.")
    client = {"metadata": item.metadata} if item.metadata else None
    try:
        config = run_config(base, limits=item.limits, client=client)
    except ApplicationError as exc:
        limit = exc.details.get("limit") if isinstance(exc.details, dict) else None
        raise _ItemError(f"{path}.limits" + (f".{limit}" if limit else ""), exc.message) from None
    # django-stubs types the owner as User; callers hold request.user (as in run_create).
    return Run(  # type: ignore[misc]
        agent=agent,
        owner=owner,
        input=item.input,
        config=config,
        agent_version=version,
        limits={name: config["limits"][name] for name in item.limits or {}},
        thread=thread,
    )


def run_batch_fingerprint(*, agent: Agent, items: list[BatchItem]) -> str:
    """SHA-256 of a whole batch request in canonical JSON (``run_request_fingerprint``'s
    rule: key order and whitespace do not count, every value and the items' order do)."""
    asked = {
        "agent": agent.slug,
        "inputs": [
            {
                "input": item.input,
                "thread": str(item.thread) if item.thread else None,
                "limits": item.limits or {},
                "metadata": item.metadata or {},
            }
            for item in items
        ],
    }
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _batch_replay(batch: RunBatch, fingerprint: str) -> list[uuid.UUID]:
    if batch.idempotency_fingerprint != fingerprint:
        raise UnprocessableError(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request; use a new key.",
            details={"batch": str(batch.pk)},
        )
    return [uuid.UUID(run_id) for run_id in batch.run_ids]


def _after_batch_create(agent_slug: str, run_ids: list[uuid.UUID]) -> None:
    metrics.runs_created.labels(agent=agent_slug).inc(len(run_ids))
    runs_hand_over(run_ids=run_ids)


def runs_hand_over(*, run_ids: list[uuid.UUID]) -> int:
    """``run_hand_over`` for many runs: their messages over one broker connection, then
    one UPDATE marking those sent. Returns how many went; if the broker refuses one, the
    rest stay owed and ``runs_dispatch`` sends them once it answers."""
    from agents.runtime.executors import BROKER_ERRORS, enqueue_runs

    sent: list[uuid.UUID] = []
    try:
        enqueue_runs(run_ids, sent=sent)
    except BROKER_ERRORS as exc:
        log.warning(
            "runs_hand_over_failed",
            sent=len(sent),
            owed=len(run_ids) - len(sent),
            error=f"{type(exc).__name__}",
        )
        metrics.run_hand_over_failures.inc()
    if sent:
        Run.objects.filter(pk__in=sent, dispatched_at__isnull=True).update(
            dispatched_at=timezone.now()
        )
    return len(sent)


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
