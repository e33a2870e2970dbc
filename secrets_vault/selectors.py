"""Reads of vault metadata (never values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Max, Q, QuerySet

from secrets_vault.keyring import get_keyring
from secrets_vault.models import Secret, SecretAccessEvent, SecretVersion, VersionState


def secret_list() -> QuerySet[Secret]:
    """Secrets with their last access time and version count, agents prefetched."""
    return (
        Secret.objects.annotate(
            last_accessed_at=Max(
                "access_events__created_at", filter=Q(access_events__outcome="success")
            ),
            version_count=Count("versions", distinct=True),
        )
        .prefetch_related("agents")
        .order_by("name")
    )


def secret_get(name: str) -> Secret | None:
    return secret_list().filter(name=name).first()


def secret_version_list(secret: Secret) -> QuerySet[SecretVersion]:
    return (
        secret.versions.select_related("created_by")
        .defer("value_ciphertext", "wrapped_dek")
        .order_by("-version")
    )


def secret_version_get(secret: Secret, version: int) -> SecretVersion | None:
    return secret_version_list(secret).filter(version=version).first()


def secret_access_event_list(secret: Secret | None = None) -> QuerySet[SecretAccessEvent]:
    qs = SecretAccessEvent.objects.all()
    return qs.filter(secret=secret) if secret is not None else qs


@dataclass
class VaultStatus:
    active_kek_id: str
    keyring_ids: list[str]
    # KEK id -> number of versions (active or disabled) whose data key it wraps.
    versions_by_kek: dict[str, int] = field(default_factory=dict)
    destroyed: int = 0

    @property
    def removable_kek_ids(self) -> list[str]:
        """Keys in the keyring that wrap nothing any more (safe to remove)."""
        return [
            k
            for k in self.keyring_ids
            if k != self.active_kek_id and not self.versions_by_kek.get(k)
        ]

    @property
    def missing_kek_ids(self) -> list[str]:
        """KEK ids that stored versions need but the keyring lacks (those cannot decrypt)."""
        return sorted(k for k, n in self.versions_by_kek.items() if n and k not in self.keyring_ids)

    @property
    def pending_rewrap(self) -> int:
        return sum(n for k, n in self.versions_by_kek.items() if k != self.active_kek_id)


def vault_status_get() -> VaultStatus:
    keyring = get_keyring()
    rows = (
        SecretVersion.objects.exclude(state=VersionState.DESTROYED)
        .values("kek_id")
        .annotate(n=Count("id"))
        .order_by("kek_id")
    )
    return VaultStatus(
        active_kek_id=keyring.active_id,
        keyring_ids=keyring.ids,
        versions_by_kek={r["kek_id"]: r["n"] for r in rows},
        destroyed=SecretVersion.objects.filter(state=VersionState.DESTROYED).count(),
    )
