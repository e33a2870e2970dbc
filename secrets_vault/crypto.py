"""Envelope encryption with AES-256-GCM (the ``cryptography`` package).

Each secret version gets a fresh random data key (DEK). The value is encrypted under the
DEK; the DEK is wrapped (encrypted) under the active key-encryption key (KEK) from the
keyring. Stored layout of both blobs: ``nonce (12 bytes) || ciphertext || tag (16)``.

Associated data binds the value to (secret id, version) and the wrapped DEK to
(secret id, version, KEK id), so a blob copied to another row, secret or version, or
relabelled with another KEK id, fails to authenticate.

Every function that holds key material or plaintext is marked ``sensitive_variables`` so
Django's error pages and error e-mails show its locals as '********'.
"""

from __future__ import annotations

import hmac
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.views.decorators.debug import sensitive_variables

from secrets_vault.errors import SecretDecryptionError
from secrets_vault.keyring import Keyring

ALGORITHM = "AES-256-GCM"
FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
DEK_BYTES = 32
WRAPPED_DEK_BYTES = NONCE_BYTES + DEK_BYTES + TAG_BYTES
MIN_VALUE_BLOB = NONCE_BYTES + TAG_BYTES
MASK = "********"
HINT_MIN_LENGTH = 16
HINT_CHARS = 4


class SecretValue:
    """Plaintext in a wrapper that will not print, serialise or pickle itself.

    Call ``reveal()`` at the point of use only (building a provider client, setting an
    auth header); pass the wrapper everywhere else.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("A secret value is a string.")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def hint(self) -> str:
        """The last 4 characters, and only for values of at least 16 characters."""
        value = self._value
        return value[-HINT_CHARS:] if len(value) >= HINT_MIN_LENGTH else ""

    def __repr__(self) -> str:
        return f"<SecretValue {MASK}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("SecretValue is immutable.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("A SecretValue cannot be pickled.")

    def __reduce__(self) -> NoReturn:
        raise TypeError("A SecretValue cannot be pickled.")

    def __getstate__(self) -> NoReturn:
        raise TypeError("A SecretValue cannot be pickled.")

    def __copy__(self) -> SecretValue:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretValue:
        return self

    def __json__(self) -> NoReturn:  # some encoders look for this hook
        raise TypeError("A SecretValue cannot be serialised.")


@dataclass(frozen=True)
class EncryptedRecord:
    """What one stored version holds besides its metadata."""

    value_ciphertext: bytes = field(repr=False)
    wrapped_dek: bytes = field(repr=False)
    kek_id: str
    algorithm: str = ALGORITHM
    format_version: int = FORMAT_VERSION


def value_aad(secret_id: uuid.UUID, version: int) -> bytes:
    return f"switchyard-vault:v{FORMAT_VERSION}:value:{secret_id}:{version}".encode()


def dek_aad(secret_id: uuid.UUID, version: int, kek_id: str) -> bytes:
    return f"switchyard-vault:v{FORMAT_VERSION}:dek:{secret_id}:{version}:{kek_id}".encode()


@sensitive_variables()
def encrypt_value(
    *, secret_id: uuid.UUID, version: int, value: SecretValue, keyring: Keyring
) -> EncryptedRecord:
    """Encrypt a value under a fresh DEK and wrap the DEK under the active KEK."""
    dek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + AESGCM(dek).encrypt(
        nonce, value.reveal().encode("utf-8"), value_aad(secret_id, version)
    )
    kek_id = keyring.active_id
    return EncryptedRecord(
        value_ciphertext=blob,
        wrapped_dek=_wrap(
            dek, secret_id=secret_id, version=version, kek_id=kek_id, keyring=keyring
        ),
        kek_id=kek_id,
    )


@sensitive_variables()
def _wrap(
    dek: bytes, *, secret_id: uuid.UUID, version: int, kek_id: str, keyring: Keyring
) -> bytes:
    kek = keyring.keys[kek_id]
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, dek, dek_aad(secret_id, version, kek_id))


@sensitive_variables()
def _unwrap(
    wrapped: bytes | memoryview | None,
    *,
    name: str,
    secret_id: uuid.UUID,
    version: int,
    kek_id: str,
    keyring: Keyring,
) -> bytes:
    if wrapped is None:
        raise SecretDecryptionError(name=name, version=version, reason="missing")
    wrapped = bytes(wrapped)
    kek = keyring.key(kek_id)
    if kek is None:
        raise SecretDecryptionError(name=name, version=version, reason="unknown_key", kek_id=kek_id)
    if len(wrapped) != WRAPPED_DEK_BYTES:
        raise SecretDecryptionError(name=name, version=version, reason="truncated", kek_id=kek_id)
    try:
        return AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], dek_aad(secret_id, version, kek_id)
        )
    except InvalidTag:
        raise SecretDecryptionError(
            name=name, version=version, reason="authentication_failed", kek_id=kek_id
        ) from None


def _check_format(*, name: str, version: int, algorithm: str, format_version: int) -> None:
    if algorithm != ALGORITHM or format_version != FORMAT_VERSION:
        raise SecretDecryptionError(name=name, version=version, reason="unsupported_format")


@sensitive_variables()
def decrypt_value(
    *,
    name: str,
    secret_id: uuid.UUID,
    version: int,
    value_ciphertext: bytes | memoryview | None,
    wrapped_dek: bytes | memoryview | None,
    kek_id: str,
    algorithm: str,
    format_version: int,
    keyring: Keyring,
) -> SecretValue:
    """Unwrap the DEK and decrypt the value; any failure raises ``SecretDecryptionError``."""
    _check_format(name=name, version=version, algorithm=algorithm, format_version=format_version)
    dek = _unwrap(
        wrapped_dek,
        name=name,
        secret_id=secret_id,
        version=version,
        kek_id=kek_id,
        keyring=keyring,
    )
    if value_ciphertext is None:
        raise SecretDecryptionError(name=name, version=version, reason="missing")
    blob = bytes(value_ciphertext)
    if len(blob) < MIN_VALUE_BLOB:
        raise SecretDecryptionError(name=name, version=version, reason="truncated")
    try:
        raw = AESGCM(dek).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], value_aad(secret_id, version)
        )
    except InvalidTag:
        raise SecretDecryptionError(
            name=name, version=version, reason="authentication_failed", kek_id=kek_id
        ) from None
    try:
        return SecretValue(raw.decode("utf-8"))
    except UnicodeDecodeError:  # authenticated, so only a bug could get here
        raise SecretDecryptionError(
            name=name, version=version, reason="unsupported_format"
        ) from None


@sensitive_variables()
def rewrap_dek(
    *,
    name: str,
    secret_id: uuid.UUID,
    version: int,
    wrapped_dek: bytes | memoryview | None,
    kek_id: str,
    algorithm: str,
    format_version: int,
    keyring: Keyring,
) -> tuple[bytes, str]:
    """Re-wrap a DEK under the active KEK; the value itself is never decrypted."""
    _check_format(name=name, version=version, algorithm=algorithm, format_version=format_version)
    dek = _unwrap(
        wrapped_dek,
        name=name,
        secret_id=secret_id,
        version=version,
        kek_id=kek_id,
        keyring=keyring,
    )
    new_id = keyring.active_id
    return _wrap(dek, secret_id=secret_id, version=version, kek_id=new_id, keyring=keyring), new_id
