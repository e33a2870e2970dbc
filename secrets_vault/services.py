"""Writes and business rules of the vault; ``secret_reveal`` is the only way to plaintext.

Locking order where writers meet: the ``Secret`` row first (``select_for_update``), then
its versions. ``vault_rewrap`` locks version rows only, skipping those other writers hold.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from core.errors import ApplicationError, ConflictError
from secrets_vault.crypto import SecretValue, encrypt_value, rewrap_dek
from secrets_vault.errors import (
    SecretDecryptionError,
    SecretExistsError,
    SecretNotFoundError,
    SecretUnavailableError,
    VersionConflictError,
)
from secrets_vault.keyring import get_keyring
from secrets_vault.models import (
    Secret,
    SecretVersion,
    VersionState,
    name_validator,
)

log = structlog.get_logger(__name__)

MAX_VALUE_CHARS = 65_536
MAX_PURPOSE_CHARS = 200
DEFAULT_MAX_VERSIONS = 10

Actor = Any  # a user, a label such as "worker", or None for "system"


def max_versions() -> int:
    """How many versions a secret keeps (``VAULT_MAX_VERSIONS``, default 10, at least 1)."""
    raw = getattr(settings, "VAULT_MAX_VERSIONS", None) or os.environ.get("VAULT_MAX_VERSIONS")
    try:
        return max(1, int(raw)) if raw else DEFAULT_MAX_VERSIONS
    except ValueError:
        return DEFAULT_MAX_VERSIONS


def _user_or_none(actor: Actor) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and actor.pk else None


def _actor_label(actor: Actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor[:150]
    get_username = getattr(actor, "get_username", None)
    return (get_username() if get_username else str(actor))[:150]


@sensitive_variables("value")
def _as_value(value: SecretValue | str) -> SecretValue:
    if isinstance(value, str):
        value = SecretValue(value)
    if not isinstance(value, SecretValue):
        raise TypeError("value must be a SecretValue or a str")
    if not value:
        raise ApplicationError("invalid_value", "The value must not be empty.")
    if len(value.reveal()) > MAX_VALUE_CHARS:
        raise ApplicationError(
            "invalid_value", f"The value is longer than {MAX_VALUE_CHARS} characters."
        )
    return value


def _validate_name(name: str) -> None:
    try:
        name_validator(name)
    except ValidationError:
        raise ApplicationError("invalid_name", str(name_validator.message)) from None


@sensitive_variables("value", "record")
def _new_version(*, secret: Secret, number: int, value: SecretValue, actor: Actor) -> SecretVersion:
    record = encrypt_value(secret_id=secret.id, version=number, value=value, keyring=get_keyring())
    return SecretVersion.objects.create(
        secret=secret,
        version=number,
        value_ciphertext=record.value_ciphertext,
        wrapped_dek=record.wrapped_dek,
        kek_id=record.kek_id,
        algorithm=record.algorithm,
        format_version=record.format_version,
        hint=value.hint() if secret.show_hint else "",
        created_by=_user_or_none(actor),
    )


@sensitive_variables("value")
def secret_create(
    *,
    name: str,
    value: SecretValue | str,
    description: str = "",
    agents: Iterable[Any] = (),
    rotation_interval_days: int | None = None,
    show_hint: bool = True,
    actor: Actor = None,
) -> Secret:
    """Create a secret with its first version (version 1), encrypted under the active KEK."""
    _validate_name(name)
    value = _as_value(value)
    if Secret.objects.filter(name=name).exists():
        raise SecretExistsError(name)
    now = timezone.now()
    try:
        with transaction.atomic():
            secret = Secret.objects.create(
                name=name,
                description=description,
                show_hint=show_hint,
                rotation_interval_days=rotation_interval_days,
                current_version=1,
                last_rotated_at=now,
            )
            agents = list(agents)
            if agents:
                secret.agents.set(agents)
            _new_version(secret=secret, number=1, value=value, actor=actor)
    except IntegrityError:
        # A concurrent create with the same name won the unique index.
        raise SecretExistsError(name) from None
    log.info("secret_created", secret=name, version=1, actor=_actor_label(actor))
    return secret


@sensitive_variables("value")
def secret_rotate(
    *,
    secret: Secret | str,
    value: SecretValue | str,
    expected_version: int | None = None,
    actor: Actor = None,
) -> SecretVersion:
    """Add a new version that becomes current (check-and-set with ``expected_version``).

    The secret row is locked for the whole write, so concurrent rotations queue up: with
    the same ``expected_version`` exactly one wins, the others get ``VersionConflictError``
    (409 ``version_conflict``); without it each gets its own, distinct version number.
    Versions older than the newest ``VAULT_MAX_VERSIONS`` are deleted.
    """
    value = _as_value(value)
    with transaction.atomic():
        locked = (
            _lock_secret(name=secret) if isinstance(secret, str) else _lock_secret(pk=secret.pk)
        )
        if expected_version is not None and expected_version != locked.current_version:
            raise VersionConflictError(
                name=locked.name, expected=expected_version, current=locked.current_version
            )
        number = locked.current_version + 1
        version = _new_version(secret=locked, number=number, value=value, actor=actor)
        locked.current_version = number
        locked.last_rotated_at = version.created_at
        locked.save(update_fields=["current_version", "last_rotated_at", "updated_at"])
        pruned, _ = locked.versions.filter(version__lte=number - max_versions()).delete()
    if not isinstance(secret, str):
        secret.current_version = number
        secret.last_rotated_at = locked.last_rotated_at
    log.info(
        "secret_rotated",
        secret=locked.name,
        version=number,
        pruned=pruned,
        actor=_actor_label(actor),
    )
    return version


def _lock_secret(*, name: str | None = None, pk: Any = None) -> Secret:
    qs = Secret.objects.select_for_update()
    found = qs.filter(name=name).first() if name is not None else qs.filter(pk=pk).first()
    if found is None:
        raise SecretNotFoundError(name or str(pk))
    return found


def _locked_version(secret: Secret, version: int) -> tuple[Secret, SecretVersion]:
    locked = _lock_secret(pk=secret.pk)
    row = locked.versions.select_for_update().filter(version=version).first()
    if row is None:
        raise SecretNotFoundError(locked.name, version)
    return locked, row


def secret_version_disable(*, secret: Secret, version: int, actor: Actor = None) -> SecretVersion:
    """Make a version unusable (reversible with ``secret_version_enable``)."""
    return _switch_version(secret, version, to=VersionState.DISABLED, actor=actor)


def secret_version_enable(*, secret: Secret, version: int, actor: Actor = None) -> SecretVersion:
    """Make a disabled version usable again; a destroyed one cannot come back."""
    return _switch_version(secret, version, to=VersionState.ACTIVE, actor=actor)


def _switch_version(secret: Secret, version: int, *, to: str, actor: Actor) -> SecretVersion:
    """Between active and disabled, under the row lock; idempotent; destroyed is final."""
    source = VersionState.ACTIVE if to == VersionState.DISABLED else VersionState.DISABLED
    with transaction.atomic():
        locked, row = _locked_version(secret, version)
        if row.state == VersionState.DESTROYED:
            raise SecretUnavailableError(name=locked.name, version=version, state=row.state)
        if row.state == source:
            row.state = to
            row.disabled_at = timezone.now() if to == VersionState.DISABLED else None
            row.save(update_fields=["state", "disabled_at"])
    event = "secret_version_disabled" if to == VersionState.DISABLED else "secret_version_enabled"
    log.info(event, secret=locked.name, version=version, actor=_actor_label(actor))
    return row


def secret_version_destroy(*, secret: Secret, version: int, actor: Actor = None) -> SecretVersion:
    """Erase a version's ciphertext and wrapped data key for good (idempotent)."""
    with transaction.atomic():
        locked, row = _locked_version(secret, version)
        if row.state != VersionState.DESTROYED:
            now = timezone.now()
            SecretVersion.objects.filter(pk=row.pk).update(
                state=VersionState.DESTROYED,
                value_ciphertext=None,
                wrapped_dek=None,
                hint="",
                destroyed_at=now,
            )
            row.refresh_from_db()
    log.info(
        "secret_version_destroyed", secret=locked.name, version=version, actor=_actor_label(actor)
    )
    return row


def secret_update(
    *,
    secret: Secret,
    description: str | None = None,
    agents: Iterable[Any] | None = None,
    rotation_interval_days: int | None | EllipsisType = ...,  # ...: leave it unchanged
    show_hint: bool | None = None,
    actor: Actor = None,
) -> Secret:
    """Change a secret's metadata. Turning the hint off clears the stored hints."""
    with transaction.atomic():
        locked = _lock_secret(pk=secret.pk)
        fields = ["updated_at"]
        if description is not None:
            locked.description = description
            fields.append("description")
        if not isinstance(rotation_interval_days, EllipsisType):
            locked.rotation_interval_days = rotation_interval_days
            fields.append("rotation_interval_days")
        if show_hint is not None:
            locked.show_hint = show_hint
            fields.append("show_hint")
            if not show_hint:
                locked.versions.exclude(hint="").update(hint="")
        locked.save(update_fields=fields)
        if agents is not None:
            locked.agents.set(list(agents))
    log.info("secret_updated", secret=locked.name, actor=_actor_label(actor))
    return locked


def secret_delete(*, secret: Secret, actor: Actor = None) -> None:
    """Delete a secret and every version; its access events stay (with the name)."""
    name = secret.name
    try:
        with transaction.atomic():
            locked = _lock_secret(pk=secret.pk)
            locked.delete()
    except ProtectedError as exc:
        # Who uses it (providers, say) is not the vault's business to import; the rows say.
        users = sorted({str(obj) for obj in exc.protected_objects})
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
        raise ConflictError(
            "secret_in_use",
            f"Secret '{name}' is still used by {', '.join(kinds)}: {', '.join(users)}.",
            details={"used_by": users},
        ) from None
    log.info("secret_deleted", secret=name, actor=_actor_label(actor))


@dataclass
class RewrapReport:
    active_kek_id: str
    rewrapped: int = 0
    batches: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    remaining: int = 0


def vault_rewrap(
    *, batch_size: int = 200, on_batch: Callable[[RewrapReport], None] | None = None
) -> RewrapReport:
    """Re-wrap every data key not under the active KEK; values are never decrypted.

    Each batch is one transaction holding row locks taken with ``SKIP LOCKED``: rows
    another writer holds are left for a later run. Re-running it is a no-op once every
    version is under the active KEK. ``remaining`` counts rows still under other KEKs
    (skipped because locked, or failed).
    """
    keyring = get_keyring()
    report = RewrapReport(active_kek_id=keyring.active_id)
    last_pk = 0
    pending = SecretVersion.objects.filter(wrapped_dek__isnull=False).exclude(
        kek_id=keyring.active_id
    )
    while True:
        with transaction.atomic():
            rows = list(
                pending.filter(pk__gt=last_pk)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("secret")
                .only(
                    "pk",
                    "version",
                    "wrapped_dek",
                    "kek_id",
                    "algorithm",
                    "format_version",
                    "secret__name",
                    "secret__id",
                )
                .order_by("pk")[:batch_size]
            )
            if not rows:
                break
            changed = []
            for row in rows:
                try:
                    row.wrapped_dek, row.kek_id = rewrap_dek(
                        name=row.secret.name,
                        secret_id=row.secret_id,
                        version=row.version,
                        wrapped_dek=row.wrapped_dek,
                        kek_id=row.kek_id,
                        algorithm=row.algorithm,
                        format_version=row.format_version,
                        keyring=keyring,
                    )
                except SecretDecryptionError as exc:
                    report.failed.append((row.secret.name, row.version, exc.reason))
                    log.error(
                        "secret_rewrap_failed",
                        secret=row.secret.name,
                        version=row.version,
                        kek_id=row.kek_id,
                        reason=exc.reason,
                    )
                    continue
                changed.append(row)
            SecretVersion.objects.bulk_update(changed, ["wrapped_dek", "kek_id"])
        last_pk = rows[-1].pk
        report.rewrapped += len(changed)
        report.batches += 1
        if on_batch is not None:
            on_batch(report)
    report.remaining = pending.count()
    log.info(
        "vault_rewrap_done",
        active_kek_id=keyring.active_id,
        rewrapped=report.rewrapped,
        failed=len(report.failed),
        remaining=report.remaining,
    )
    return report
