"""The executor's synchronous database work: claiming a run, preparing it, finishing it.

Kept apart from engine.py so each step is one ``sync_to_async`` hop with a clear
transaction boundary.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from agents.lifecycle import ACTIVE, RunStatus
from agents.models import Agent, ModelCall, PriceOverride, Run, RunEvent
from agents.runtime.events import EventEmitter
from agents.runtime.fencing import ClaimLost, lock_claim
from agents.services import agent_month_spend, run_transition
from agents.thread_services import run_history


class RunSetupError(Exception):
    """The run cannot start as configured (e.g. its provider key is missing)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Prepared:
    reveal_cache: Any = field(default_factory=lambda: _reveal_cache())
    api_key: str | None = None
    price_override: PriceOverride | None = None
    budget_left_usd: Decimal | None = None
    history: list[Any] = field(default_factory=list)
    # Vault values this run can see, so moderation can catch them in any output. They stay
    # in this process's memory (never stored, logged or sent anywhere).
    known_secrets: list[str] = field(default_factory=list)


def _reveal_cache() -> Any:
    from secrets_vault.reveal_services import RevealCache

    return RevealCache()


# A run message is a ticket to start one queued run, preferably the one it names: the
# named run unless its owner has more runs in flight than another owner with runs
# waiting, else that owner's oldest queued run (the owner with the fewest in flight;
# among equals, the one waiting longest). A ticket whose run was started by another
# ticket (or cancelled) starts the fairest queued run instead, so one owner's flood does
# not make everyone else's runs wait behind it, and messages never fall short of queued
# runs. Runs of agents with max_concurrent_runs keep their own path (claim() below).
# One statement: one pass over the queued runs (grouped by owner), each waiting owner's
# runs in flight and its oldest queued run from run_owner_unfinished_idx; about 1 ms
# with 2,000 runs queued (docs/runtime.md).
FAIREST_QUEUED_RUN = """
WITH waiting AS (
    SELECT q.owner_id, min(q.created_at) AS oldest
    FROM agents_run q JOIN agents_agent a ON a.id = q.agent_id
    WHERE q.status = 'queued' AND a.max_concurrent_runs IS NULL
    GROUP BY q.owner_id
), fairest AS (
    SELECT w.owner_id FROM waiting w
    ORDER BY (
        SELECT count(*) FROM agents_run r
        WHERE r.owner_id = w.owner_id AND r.status IN ('running', 'cancelling')
    ), w.owner_id = %(owner)s DESC, w.oldest
    LIMIT 1
)
SELECT r.id FROM agents_run r
WHERE r.status = 'queued'
  AND r.owner_id = (SELECT owner_id FROM fairest)
  AND EXISTS (
      SELECT 1 FROM agents_agent a WHERE a.id = r.agent_id AND a.max_concurrent_runs IS NULL
  )
  AND {named}
ORDER BY r.created_at
LIMIT 1
"""
# The named run if it is the fairest owner's and queued, else that owner's oldest...
NAMED_FIRST = """(r.id = %(run)s OR NOT EXISTS (
      SELECT 1 FROM agents_run n
      WHERE n.id = %(run)s AND n.status = 'queued' AND n.owner_id = (SELECT owner_id FROM fairest)
  ))"""
# When that finds nothing although runs are queued, other tickets hold the rows it would
# take (say the fairest owner's only queued run): the oldest queued run anyone may start,
# so that no ticket is spent without starting one while runs wait.
ANY_QUEUED_RUN = """
SELECT r.id FROM agents_run r
WHERE r.status = 'queued'
  AND EXISTS (
      SELECT 1 FROM agents_agent a WHERE a.id = r.agent_id AND a.max_concurrent_runs IS NULL
  )
ORDER BY r.created_at
LIMIT 1
"""
# And when that finds nothing either, every queued run is locked: by other tickets, or
# by whoever handed it over (run_hand_over marks it dispatched right after the send, so
# a fast worker meets that lock). The ticket must not be spent for nothing, or a run
# would wait for the reaper's re-send: it waits for the oldest queued run's lock
# (ANY_QUEUED_RUN without SKIP LOCKED; a row another ticket started meanwhile no longer
# matches, and the scan goes on to the next). Not only the named run's: the named run
# may have been started by another ticket while the run that ticket was sent for is
# still locked by its hand-over (bench_runs at c20 stranded one run in 2,000 so).


def fairest_queued_run(run_id: uuid.UUID, owner_id: int) -> uuid.UUID | None:
    """The queued run a ticket naming ``run_id`` (of ``owner_id``) should start, locked
    for this transaction (SKIP LOCKED: concurrent tickets pick different runs); None when
    no run of an agent without a concurrency limit is queued."""
    named = Run._meta.pk.get_db_prep_value(run_id, connection)  # SQLite stores hex
    params = {"run": named, "owner": owner_id}
    with connection.cursor() as cursor:
        cursor.execute(_locking(FAIREST_QUEUED_RUN.replace("{named}", NAMED_FIRST)), params)
        row = cursor.fetchone()
        if row is None and connection.vendor == "postgresql":  # none queued, or all locked
            cursor.execute(_locking(ANY_QUEUED_RUN))
            row = cursor.fetchone()
            if row is None:
                cursor.execute(ANY_QUEUED_RUN + "FOR UPDATE OF r")
                row = cursor.fetchone()
    return None if row is None else uuid.UUID(str(row[0]))


@functools.cache
def _locking(sql: str) -> str:
    if connection.vendor == "postgresql":  # SQLite (embedded mode) has one writer anyway
        sql += "FOR UPDATE OF r SKIP LOCKED"
    return sql


def claim(run_id: uuid.UUID) -> tuple[Run, RunEvent] | None:
    """Move a queued run ``queued -> running``: the one the ticket names, or the fairest
    (see FAIREST_QUEUED_RUN), or under the agent's concurrency limit that agent's oldest.
    Returns (run, its run.started event, stored but not published), or None if nothing
    started."""
    close_old_connections()
    last_seq = RunEvent.objects.filter(run_id=OuterRef("pk")).order_by("-seq").values("seq")
    run = (
        Run.objects.select_related("agent")
        .annotate(
            last_seq=Subquery(last_seq[:1]),  # saves a MAX(seq) query below
            config_provider_id=Cast(KT("config__provider__id"), IntegerField()),
            config_model_name=KT("config__model_name"),
        )
        .annotate(has_price_override=Exists(_overrides_for_config()))  # most runs have none
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        return None
    limit = run.agent.max_concurrent_runs
    if limit and run.status != RunStatus.QUEUED:
        return None  # start_next_queued sends the agent's next run its own message
    # Safe to number from this read: only a writer that wins the conditional UPDATE below
    # appends, and no event is added to a queued run otherwise.
    seq = (run.last_seq or 0) + 1
    named_queued = run.status == RunStatus.QUEUED  # else seq above may be stale
    with transaction.atomic():
        if not limit:
            picked = fairest_queued_run(run.pk, run.owner_id)
            if picked is None:
                return None
            run_id = picked
        else:
            # Serialise starts per agent: the row lock makes "count, then start" atomic
            # across workers, so the limit is never exceeded.
            Agent.objects.select_for_update().filter(pk=run.agent_id).first()
            active = Run.objects.filter(agent_id=run.agent_id, status__in=ACTIVE).count()
            if active >= limit:
                return None
            oldest = (
                Run.objects.filter(agent_id=run.agent_id, status=RunStatus.QUEUED)
                .order_by("created_at")
                .values_list("pk", flat=True)
                .first()
            )
            run_id = oldest or run_id
        now = timezone.now()
        event = run_transition(
            run_id=run_id,
            to=RunStatus.RUNNING,
            seq=seq if run_id == run.pk and named_queued else None,
            publish=False,  # the executor publishes it from its own event loop
            started_at=now,
            heartbeat_at=now,
            attempt=F("attempt") + 1,
        )
    if event is None:
        return None
    if run_id != run.pk or not named_queued:  # a fairer run, or the agent's oldest
        return Run.objects.select_related("agent").get(pk=run_id), event
    # what the UPDATE just wrote; no need to read the row again
    run.status, run.started_at, run.heartbeat_at = RunStatus.RUNNING, now, now
    run.attempt += 1
    return run, event


def _overrides_for_config() -> Any:
    """PriceOverride rows that could apply to the outer run's model (see find_override)."""
    return PriceOverride.objects.filter(
        Q(provider_id=OuterRef("config_provider_id")) | Q(provider__isnull=True),
        model_name=OuterRef("config_model_name"),
    )


def prepare(run: Run) -> Prepared:
    """What the run needs from the database before its first model call."""
    config = run.config
    provider = config["provider"]
    prepared = Prepared(history=run_history(run))
    from agents.runtime.ledger import find_override

    if getattr(run, "has_price_override", True):  # the claim looked already
        prepared.price_override = find_override(provider.get("id"), config["model_name"])
    budget = run.agent.monthly_budget_usd
    if budget is not None:
        prepared.budget_left_usd = budget - agent_month_spend(run.agent_id)
        if prepared.budget_left_usd <= 0:
            raise RunSetupError("budget_exhausted", "The agent's monthly budget is spent.")
    prepared.api_key = reveal_provider_key(run, prepared.reveal_cache)
    if config.get("moderation_policy_id"):
        prepared.known_secrets = run_visible_secrets(run, prepared)
    return prepared


def run_secret_names(config: dict[str, Any]) -> list[str]:
    """The vault secrets a run uses: its provider's key and its tools' credentials."""
    names = [config["provider"].get("api_key_secret")]
    names += [
        c.get("auth_secret") for c in config.get("tool_config", {}).values() if isinstance(c, dict)
    ]
    return sorted({n for n in names if n})


def reveal_for_run(run: Run, cache: Any, name: str) -> str:
    """A vault secret's plaintext for this run: revealed (and audited) once per run, with
    purpose ``run:<uuid>``; later uses come from ``cache``."""
    from secrets_vault.reveal_services import reveal_once

    purpose = f"run:{run.id}"
    return reveal_once(cache, name=name, purpose=purpose, actor="runtime", agent=run.agent).reveal()


def run_visible_secrets(run: Run, prepared: Prepared) -> list[str]:
    values = []
    for name in run_secret_names(run.config):
        try:
            values.append(reveal_for_run(run, prepared.reveal_cache, name))
        except Exception:  # noqa: BLE001 - an unreadable secret cannot leak either
            continue
    return values


async def moderation_for(run: Run, prepared: Prepared) -> Any | None:
    """The run's moderation (None without a policy), with the keys of external rules."""
    policy_id = run.config.get("moderation_policy_id")
    if not policy_id:
        return None
    from moderation.runtime import RunModeration

    def external_key(rule: Any) -> str | None:
        name = rule.params.get("api_key_secret")
        return reveal_for_run(run, prepared.reveal_cache, name) if name else None

    return await RunModeration.for_run(
        run_id=run.id,
        agent_id=run.agent_id,
        policy_id=policy_id,
        known_secrets=prepared.known_secrets,
        external_key=external_key,
    )


def reveal_provider_key(run: Run, cache: Any) -> str | None:
    """The provider's key from the vault, revealed once for this run (purpose run:<uuid>)."""
    secret_name = run.config["provider"].get("api_key_secret")
    if not secret_name:
        return None
    try:
        return reveal_for_run(run, cache, secret_name)
    except Exception as exc:  # noqa: BLE001 - any vault failure means "no usable key"
        message = f"The provider's key could not be read from the vault ({type(exc).__name__})."
        raise RunSetupError("provider_auth_failed", message) from None


def finish(
    run: Run,
    *,
    status: str,
    data: dict[str, Any],
    fields: dict[str, Any],
    calls: list[ModelCall],
    emitter: EventEmitter,
    events: list[RunEvent],
) -> tuple[str, list[RunEvent]]:
    """Store the run's last events, its ledger and its terminal status in one transaction.

    A cancel requested while the run was finishing wins: the run ends ``cancelled``.
    Returns the final status and the events stored here, for the caller to publish.
    Raises ClaimLost, storing only the ledger, when this attempt no longer owns the run.
    """
    seq = emitter.take_seq()
    if "delegate" in run.config.get("tools", []):
        fields = {**fields, **_with_children(run, fields)}
    with transaction.atomic():
        # The model calls were made and billed whoever owns the run now: always recorded.
        ModelCall.objects.bulk_create(calls)
        owned = lock_claim(run.id, run.attempt)
        if owned:
            RunEvent.objects.bulk_create(events)
            transition = functools.partial(run_transition, run_id=run.id, seq=seq, publish=False)
            event = transition(to=status, event_data=data, **fields)
            if event is None and status != RunStatus.CANCELLED:
                status = RunStatus.CANCELLED
                event = transition(to=status, **fields)
    if not owned:
        raise ClaimLost(str(run.id))
    if event is None:
        emitter.give_back_seq(seq)
        current = Run.objects.filter(pk=run.id).values_list("status", flat=True).first()
        return current or status, events
    return status, [*events, event]


def start_next_queued(agent: Agent) -> None:
    """After a run of a concurrency-limited agent ends, start its oldest queued run."""
    if agent.max_concurrent_runs is None:  # not limited: nothing waits for a slot
        return
    agent_id = agent.pk
    from agents.runtime.executors import enqueue_run

    queued = Run.objects.filter(agent_id=agent_id, status=RunStatus.QUEUED).order_by("created_at")
    active = Run.objects.filter(agent_id=agent_id, status__in=ACTIVE).count()
    free = agent.max_concurrent_runs - active
    for run_id in queued.values_list("pk", flat=True)[: max(free, 0)]:
        enqueue_run(run_id)


def _with_children(run: Run, fields: dict[str, Any]) -> dict[str, Any]:
    """A parent's totals include its delegated children's."""
    from django.db.models import Sum

    children = Run.objects.filter(parent_id=run.id).aggregate(
        requests=Sum("requests"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cost_usd=Sum("cost_usd"),
    )
    if not any(children.values()):
        return {}
    return {
        name: fields.get(name, 0) + (value or 0)
        for name, value in children.items()
        if name in fields
    }
