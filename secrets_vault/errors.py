"""Typed vault errors. Messages name secrets, versions and key ids; never values or keys.

Errors a client can cause are ``ApplicationError`` subclasses, so the API answers them in the one
error shape; the cryptographic failures are plain exceptions the caller must not swallow.
"""

from __future__ import annotations

from typing import Any

from core.errors import ConflictError, ForbiddenError, NotFoundError


class VaultError(Exception):
    """Base class of the vault's own (non-HTTP) errors."""


class SecretDecryptionError(VaultError):
    """A stored version could not be decrypted: tampered, truncated, or wrong/unknown key.

    Fail closed: nothing is returned in place of the value.
    """

    REASONS = {
        "unknown_key": "its key-encryption key is not in the keyring",
        "authentication_failed": "the ciphertext or key does not authenticate",
        "truncated": "the stored record is truncated or malformed",
        "unsupported_format": "the stored format or algorithm is not supported",
        "missing": "the version holds no ciphertext",
    }

    def __init__(self, *, name: str, version: int, reason: str, kek_id: str = "") -> None:
        self.name = name
        self.version = version
        self.reason = reason
        self.kek_id = kek_id
        why = self.REASONS.get(reason, reason)
        key = f" (KEK id '{kek_id}')" if kek_id else ""
        super().__init__(f"Secret '{name}' version {version} cannot be decrypted{key}: {why}.")


class SecretNotFoundError(NotFoundError):
    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"Secret '{name}'" + (f" has no version {version}" if version else " does not exist")
        super().__init__("not_found", f"{what}.")


class SecretExistsError(ConflictError):
    def __init__(self, name: str) -> None:
        super().__init__(
            "secret_exists",
            f"A secret named '{name}' already exists.",
        )


class VersionConflictError(ConflictError):
    """Check-and-set failed: the secret's current version is not the expected one."""

    def __init__(self, *, name: str, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        details: dict[str, Any] = {"expected_version": expected, "current_version": current}
        super().__init__(
            "version_conflict",
            f"Secret '{name}' is at version {current}, not {expected}; re-read and retry.",
            details=details,
        )


class SecretUnavailableError(ConflictError):
    """The requested version exists but is disabled or destroyed."""

    def __init__(self, *, name: str, version: int, state: str) -> None:
        self.name = name
        self.version = version
        self.state = state
        super().__init__(
            "version_unavailable",
            f"Secret '{name}' version {version} is {state}.",
            details={"version": version, "state": state},
        )


class SecretAccessDeniedError(ForbiddenError):
    """The secret is scoped to agents and the caller's agent is not one of them."""

    def __init__(self, *, name: str, agent: str) -> None:
        super().__init__(
            "secret_not_allowed",
            f"Agent '{agent}' may not use secret '{name}'.",
        )
