"""Writes and business rules for agents and runs.

Side effects (publishing an event, enqueueing a run) happen only after the transaction
that made them true has committed.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status as http

from agents.errors import ApiError
from agents.lifecycle import EVENT_FOR_STATUS, RunStatus, sources_of
from agents.models import Agent, Run, RunEvent
from agents.runtime.events import envelope_of, next_seq_sync, publish_sync
from monitoring import metrics


def agent_config_snapshot(agent: Agent) -> dict[str, Any]:
    """What a run needs of its agent, frozen at creation so later edits don't leak in."""
    provider = agent.provider
    return {
        "agent_version": agent.version,
        "provider": {
            "id": provider.pk,
            "kind": provider.kind,
            "base_url": provider.base_url,
            "timeout_s": provider.timeout_s,
            "max_retries": provider.max_retries,
            "extra_headers": provider.extra_headers,
        },
        "model_name": agent.model_name,
        "instructions": agent.instructions,
        "tools": list(agent.tools),
        "model_settings": dict(agent.model_settings),
        "limits": {
            "max_requests": agent.max_requests,
            "max_tool_calls": agent.max_tool_calls,
            "max_input_tokens": agent.max_input_tokens,
            "max_output_tokens": agent.max_output_tokens,
            "max_cost_usd": str(agent.max_cost_usd) if agent.max_cost_usd is not None else None,
            "timeout_s": agent.timeout_s,
        },
    }


def agent_save(*, agent: Agent, changed: bool) -> Agent:
    """Save an agent; every change bumps its version so runs record what they ran with."""
    if changed:
        agent.version = (agent.version or 0) + 1
    agent.full_clean()
    agent.save()
    return agent


def run_create(
    *,
    agent: Agent,
    owner: AbstractBaseUser,
    input: str,  # noqa: A002 - the API field is called input
    idempotency_key: str | None = None,
) -> tuple[Run, bool]:
    """Create a queued run and hand it to the executor once committed.

    Returns ``(run, created)``; with an ``idempotency_key`` the owner already used, the
    existing run comes back with ``created=False``, also under concurrent duplicates.
    """
    if not agent.is_active:
        raise ApiError(
            "agent_inactive",
            f"Agent '{agent.slug}' is not active.",
            http_status=http.HTTP_409_CONFLICT,
        )
    if len(input) > settings.RUN_MAX_INPUT_CHARS:
        raise ApiError(
            "input_too_long",
            f"input is {len(input)} characters; the limit is {settings.RUN_MAX_INPUT_CHARS}.",
            http_status=http.HTTP_400_BAD_REQUEST,
        )
    if idempotency_key:
        existing = Run.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            run = Run.objects.create(
                agent=agent,
                owner=owner,
                input=input,
                config=agent_config_snapshot(agent),
                idempotency_key=idempotency_key or None,
            )
            event = RunEvent.objects.create(
                run=run, seq=1, type="run.queued", data={}, created_at=run.created_at
            )
            transaction.on_commit(lambda: _after_create(run, event))
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the insert; return its run.
        return Run.objects.get(owner=owner, idempotency_key=idempotency_key), False
    return run, True


def _after_create(run: Run, event: RunEvent) -> None:
    from agents.runtime.executors import enqueue_run

    metrics.runs_created.labels(agent=run.agent.slug).inc()
    publish_sync(run.id, [envelope_of(event)])
    enqueue_run(run.id)


def run_transition(
    *,
    run_id: uuid.UUID,
    to: str,
    event_data: dict[str, Any] | None = None,
    seq: int | None = None,
    publish: bool = True,
    **fields: Any,
) -> RunEvent | None:
    """Move a run to ``to`` if its current status allows it; the one writer of status.

    A conditional UPDATE (``WHERE status IN sources``) decides races: of two writers,
    exactly one wins. The winner appends the matching event in the same transaction.
    Returns that event, or ``None`` when the run was not in a source state.
    ``seq`` is given by an executor that owns the run's numbering; others use the log.
    """
    sources = sources_of(to)
    now = timezone.now()
    if to in {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.BLOCKED,
        RunStatus.CANCELLED,
    }:
        fields.setdefault("finished_at", now)
    with transaction.atomic():
        updated = Run.objects.filter(pk=run_id, status__in=sources).update(status=to, **fields)
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
    raise ApiError(
        "run_finished",
        f"The run already ended with status '{current}'.",
        http_status=http.HTTP_409_CONFLICT,
    )


def api_token_create(*, user: AbstractBaseUser) -> str:
    """A new API token for ``user``; only its digest is stored, so it is shown once."""
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=user, expiry=None)
    return token
