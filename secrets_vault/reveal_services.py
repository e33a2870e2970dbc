"""Revealing a secret's value: the one audited read (an access event per attempt) and the
per-run cache in front of it."""

from __future__ import annotations

from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.db.models import Exists, F, OuterRef
from django.views.decorators.debug import sensitive_variables

from core.errors import ApplicationError
from secrets_vault.crypto import SecretValue, decrypt_value
from secrets_vault.errors import (
    SecretAccessDeniedError,
    SecretDecryptionError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secrets_vault.keyring import get_keyring
from secrets_vault.models import (
    AccessOutcome,
    Secret,
    SecretAccessEvent,
    SecretVersion,
    VersionState,
)
from secrets_vault.services import MAX_PURPOSE_CHARS, Actor, _actor_label, _user_or_none

log = structlog.get_logger(__name__)


def _access_event(
    *,
    name: str,
    secret_id: Any,
    version: int | None,
    actor: Actor,
    agent: Any,
    purpose: str,
    outcome: str,
) -> None:
    SecretAccessEvent.objects.create(
        secret_id=secret_id,
        secret_name=name[:128],
        version=version,
        actor=_user_or_none(actor),
        actor_label=_actor_label(actor),
        agent_slug=getattr(agent, "slug", "") or "",
        purpose=purpose,
        outcome=outcome,
    )


@sensitive_variables("value", "row")
def secret_reveal(
    *,
    name: str,
    purpose: str,
    actor: Actor,
    agent: Any = None,
    version: int | None = None,
) -> SecretValue:
    """Decrypt a secret's current (or a given) version for use; the only path to plaintext.

    Every call, whatever its outcome, writes exactly one ``SecretAccessEvent``. With
    ``agent``, a secret scoped to other agents is refused. Two queries on success (one
    read, one insert). Call it outside a transaction that may roll back, or the event
    goes with it.
    """
    if not purpose or len(purpose) > MAX_PURPOSE_CHARS:
        raise ApplicationError("invalid_purpose", f"purpose is 1-{MAX_PURPOSE_CHARS} characters.")
    through = Secret.agents.through
    qs = SecretVersion.objects.select_related("secret").filter(secret__name=name)
    qs = (
        qs.filter(version=version)
        if version is not None
        else qs.filter(version=F("secret__current_version"))
    )
    if agent is not None:
        qs = qs.annotate(
            scoped=Exists(through.objects.filter(secret_id=OuterRef("secret_id"))),
            allowed=Exists(
                through.objects.filter(secret_id=OuterRef("secret_id"), agent_id=agent.pk)
            ),
        )
    row = qs.first()
    event = {"name": name, "actor": actor, "agent": agent, "purpose": purpose}
    if row is None:
        secret_id = Secret.objects.filter(name=name).values_list("pk", flat=True).first()
        _access_event(
            **event, secret_id=secret_id, version=version, outcome=AccessOutcome.NOT_FOUND
        )
        log.warning("secret_reveal_not_found", secret=name, version=version, purpose=purpose)
        raise SecretNotFoundError(name, version)
    event.update(secret_id=row.secret_id, version=row.version)
    # scoped / allowed are the query's annotations, which django-stubs cannot see.
    if agent is not None and row.scoped and not row.allowed:  # type: ignore[attr-defined]
        _access_event(**event, outcome=AccessOutcome.DENIED)
        log.warning("secret_reveal_denied", secret=name, agent=agent.slug, purpose=purpose)
        raise SecretAccessDeniedError(name=name, agent=agent.slug)
    if row.state != VersionState.ACTIVE:
        _access_event(**event, outcome=AccessOutcome.UNAVAILABLE)
        log.warning(
            "secret_reveal_unavailable",
            secret=name,
            version=row.version,
            state=row.state,
            purpose=purpose,
        )
        raise SecretUnavailableError(name=name, version=row.version, state=row.state)
    try:
        value = decrypt_value(
            name=name,
            secret_id=row.secret_id,
            version=row.version,
            value_ciphertext=row.value_ciphertext,
            wrapped_dek=row.wrapped_dek,
            kek_id=row.kek_id,
            algorithm=row.algorithm,
            format_version=row.format_version,
            keyring=get_keyring(),
        )
    except SecretDecryptionError as exc:
        _access_event(**event, outcome=AccessOutcome.DECRYPTION_FAILED)
        log.error(
            "secret_decryption_failed",
            secret=name,
            version=row.version,
            kek_id=row.kek_id,
            reason=exc.reason,
            purpose=purpose,
        )
        raise
    _access_event(**event, outcome=AccessOutcome.SUCCESS)
    log.info(
        "secret_revealed",
        secret=name,
        version=row.version,
        purpose=purpose,
        actor=_actor_label(actor),
    )
    return value


class RevealCache:
    """Per-run memo of revealed values, so a run decrypts (and audits) each secret once.

    Create one per run, drop it when the run ends; it never leaves the process.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[tuple[str, int | None, int | None], SecretValue] = {}

    def get(self, key: tuple[str, int | None, int | None]) -> SecretValue | None:
        return self._values.get(key)

    def put(self, key: tuple[str, int | None, int | None], value: SecretValue) -> None:
        self._values[key] = value

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<RevealCache {len(self._values)} value(s)>"

    def __reduce__(self) -> Any:
        raise TypeError("A RevealCache cannot be pickled.")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("A RevealCache cannot be pickled.")


def _cache_key(name: str, agent: Any, version: int | None) -> tuple[str, int | None, int | None]:
    return (name, getattr(agent, "pk", None), version)


def reveal_once(
    cache: RevealCache,
    *,
    name: str,
    purpose: str,
    actor: Actor,
    agent: Any = None,
    version: int | None = None,
) -> SecretValue:
    """``secret_reveal`` memoised in ``cache``: the second use costs no query and no event."""
    key = _cache_key(name, agent, version)
    cached = cache.get(key)
    if cached is not None:
        return cached
    value = secret_reveal(name=name, purpose=purpose, actor=actor, agent=agent, version=version)
    cache.put(key, value)
    return value


async def areveal_once(
    cache: RevealCache,
    *,
    name: str,
    purpose: str,
    actor: Actor,
    agent: Any = None,
    version: int | None = None,
) -> SecretValue:
    """``reveal_once`` for the async runtime: a cached value comes back without a thread
    hop; otherwise the reveal (and its database work) runs in a thread."""
    cached = cache.get(_cache_key(name, agent, version))
    if cached is not None:
        return cached
    return await sync_to_async(reveal_once)(
        cache, name=name, purpose=purpose, actor=actor, agent=agent, version=version
    )
