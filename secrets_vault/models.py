"""Secrets, their encrypted versions and the access log (DESIGN section 8).

Plaintext is never stored: a version keeps its value encrypted under a per-version data
key (``value_ciphertext``) and that data key wrapped under a KEK (``wrapped_dek``). The
only other value-derived column is the optional masked ``hint`` (last 4 characters of
values of 16 characters or more), which a secret can opt out of.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
    "1-128 letters, digits, '_', '.' or '-', starting with a letter or digit.",
)


class Secret(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=128, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    agents = models.ManyToManyField(
        "agents.Agent",
        blank=True,
        related_name="secrets",
        help_text="Agents that may use this secret; none selected means every agent.",
    )
    show_hint = models.BooleanField(
        default=True,
        help_text="Show the last 4 characters (of values of 16 characters or more).",
    )
    rotation_interval_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(36_500)],
        help_text="Mark the secret as due for rotation this many days after the last one.",
    )
    # The highest version number ever issued; it is also the current version.
    current_version = models.PositiveIntegerField(default=0, editable=False)
    last_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Secret {self.name!r} v{self.current_version}>"

    @property
    def rotation_due_at(self) -> datetime | None:
        if not self.rotation_interval_days or self.last_rotated_at is None:
            return None
        return self.last_rotated_at + timedelta(days=self.rotation_interval_days)

    @property
    def rotation_due(self) -> bool:
        due = self.rotation_due_at
        return due is not None and due <= timezone.now()


class VersionState(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    DESTROYED = "destroyed", "Destroyed"


class SecretVersion(models.Model):
    secret = models.ForeignKey(Secret, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    state = models.CharField(
        max_length=10, choices=VersionState.choices, default=VersionState.ACTIVE
    )
    # nonce || AES-GCM ciphertext || tag, under the data key.
    value_ciphertext = models.BinaryField(null=True, editable=False)
    # nonce || AES-GCM(data key) || tag, under the KEK named by kek_id.
    wrapped_dek = models.BinaryField(null=True, editable=False)
    kek_id = models.CharField(max_length=32, blank=True, editable=False)
    algorithm = models.CharField(max_length=20, editable=False)
    format_version = models.PositiveSmallIntegerField(editable=False)
    hint = models.CharField(max_length=4, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    destroyed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["secret", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["secret", "version"], name="secrets_vault_version_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    state="destroyed", value_ciphertext__isnull=True, wrapped_dek__isnull=True
                )
                | (
                    ~models.Q(state="destroyed")
                    & models.Q(value_ciphertext__isnull=False, wrapped_dek__isnull=False)
                ),
                name="secrets_vault_destroyed_has_no_ciphertext",
            ),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="secrets_vault_version_positive"
            ),
        ]
        indexes = [models.Index(fields=["kek_id"], name="secrets_vault_kek_idx")]

    def __str__(self) -> str:
        return f"{self.secret_id} v{self.version}"

    def __repr__(self) -> str:
        return (
            f"<SecretVersion secret={self.secret_id} v{self.version} state={self.state} "
            f"kek={self.kek_id or '-'}>"
        )

    @property
    def masked_hint(self) -> str:
        return f"••••{self.hint}" if self.hint else "••••"


class AccessOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    NOT_FOUND = "not_found", "Not found"
    DENIED = "denied", "Denied (agent scope)"
    UNAVAILABLE = "unavailable", "Version disabled or destroyed"
    DECRYPTION_FAILED = "decryption_failed", "Decryption failed"


class SecretAccessEvent(models.Model):
    """One row per reveal, whatever its outcome. Rows outlive the secret they name."""

    secret = models.ForeignKey(
        Secret, null=True, blank=True, on_delete=models.SET_NULL, related_name="access_events"
    )
    secret_name = models.CharField(max_length=128)
    version = models.PositiveIntegerField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150, blank=True)
    agent_slug = models.CharField(max_length=63, blank=True)
    purpose = models.CharField(max_length=200)
    outcome = models.CharField(max_length=20, choices=AccessOutcome.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["secret", "-created_at"], name="secrets_vault_access_idx")]

    def __str__(self) -> str:
        return f"{self.secret_name} v{self.version} {self.outcome} ({self.purpose})"

    def __repr__(self) -> str:
        return (
            f"<SecretAccessEvent {self.secret_name!r} v{self.version} {self.outcome} "
            f"by={self.actor_label!r} purpose={self.purpose!r}>"
        )
