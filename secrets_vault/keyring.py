"""The keyring of key-encryption keys (KEKs), which lives outside the database.

Configuration (read lazily; a Django setting of the same name wins over the environment):

- ``VAULT_KEYS``: ``<key_id>:<urlsafe base64 of 32 bytes>`` entries separated by commas
  (or newlines);
- ``VAULT_KEYS_FILE``: a file holding the same text (for mounted secrets); set one of the
  two, not both;
- ``VAULT_ACTIVE_KEY_ID``: the key used for new writes; may be left out when the keyring
  holds exactly one key.

With nothing configured and DEBUG on, a development keyring is generated once into
``VAR_DIR/vault_keys``. With DEBUG off, a missing or invalid keyring stops startup.

Error messages name variables, entry positions and key ids, never key bytes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

logger = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
DEV_KEYRING_FILENAME = "vault_keys"
SETTING_NAMES = ("VAULT_KEYS", "VAULT_KEYS_FILE", "VAULT_ACTIVE_KEY_ID")


class KeyringError(ImproperlyConfigured):
    """The keyring configuration is missing or invalid (the message names the variable)."""


@dataclass(frozen=True)
class Keyring:
    """Key ids mapped to 32-byte KEKs, and the id of the one used for new writes."""

    keys: dict[str, bytes] = field(repr=False)
    active_id: str
    source: str = "VAULT_KEYS"

    def __repr__(self) -> str:
        return f"<Keyring source={self.source} active={self.active_id} ids={sorted(self.keys)}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("A keyring cannot be pickled.")

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active_id]

    def key(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    @property
    def ids(self) -> list[str]:
        return sorted(self.keys)


@sensitive_variables()
def generate_key_entry(key_id: str) -> str:
    """A new ``<key_id>:<base64>`` entry with 32 random bytes."""
    if not KEY_ID_RE.match(key_id):
        raise ValueError(
            "A key id is 1-32 letters, digits, '_', '.' or '-', starting with a letter or digit."
        )
    return f"{key_id}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


@sensitive_variables()
def parse_keyring(text: str, *, active_id: str, source: str) -> Keyring:
    """Parse and validate keyring text; ``source`` names the variable in error messages."""
    keys: dict[str, bytes] = {}
    entries = [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]
    if not entries:
        raise KeyringError(f"{source} holds no keys.")
    for position, entry in enumerate(entries, start=1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID_RE.match(key_id):
            # The entry itself is not echoed: it may be a bare key.
            raise KeyringError(
                f"{source}: entry {position} is not of the form <key_id>:<urlsafe base64>, "
                "with a key id of 1-32 letters, digits, '_', '.' or '-'."
            )
        if key_id in keys:
            raise KeyringError(f"{source}: key id '{key_id}' appears more than once.")
        encoded = encoded.strip()
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise KeyringError(f"{source}: key '{key_id}' is not valid urlsafe base64.") from None
        if len(raw) != KEY_BYTES:
            raise KeyringError(
                f"{source}: key '{key_id}' is {len(raw)} bytes; AES-256 needs {KEY_BYTES}."
            )
        keys[key_id] = raw
    if not active_id:
        if len(keys) != 1:
            raise KeyringError(
                "VAULT_ACTIVE_KEY_ID must name the key for new writes when the keyring "
                "holds more than one key."
            )
        active_id = next(iter(keys))
    if active_id not in keys:
        raise KeyringError(
            f"VAULT_ACTIVE_KEY_ID '{active_id}' is not in {source} "
            f"(ids present: {', '.join(sorted(keys))})."
        )
    return Keyring(keys=keys, active_id=active_id, source=source)


def _setting(name: str) -> str:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, "")
    return str(value).strip()


def _dev_keyring_path() -> Path:
    var_dir = getattr(settings, "VAR_DIR", None) or Path(settings.BASE_DIR) / "var"
    return Path(var_dir) / DEV_KEYRING_FILENAME


@sensitive_variables()
def _development_keyring() -> Keyring:
    path = _dev_keyring_path()
    if not path.is_file() and _write_new_keyring(path):
        logger.warning(
            "No VAULT_KEYS configured: generated a development vault keyring at %s. "
            "Never use it in production; see docs/secrets.md.",
            path,
        )
    return parse_keyring(path.read_text(), active_id="", source=str(path))


def _write_new_keyring(path: Path) -> bool:
    """Write a fresh development keyring; False when another process wrote one first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once must not write two different keyrings.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False  # the other process's keyring is read by the caller
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key_entry("dev1") + "\n")
    return True


@sensitive_variables()
def load_keyring() -> Keyring:
    """Read and validate the keyring from settings / the environment (no caching)."""
    inline, path, active_id = (_setting(n) for n in SETTING_NAMES)
    if inline and path:
        raise KeyringError("Set VAULT_KEYS or VAULT_KEYS_FILE, not both.")
    if inline:
        return parse_keyring(inline, active_id=active_id, source="VAULT_KEYS")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise KeyringError(
                f"VAULT_KEYS_FILE: cannot read {path} ({exc.strerror or type(exc).__name__})."
            ) from None
        return parse_keyring(text, active_id=active_id, source="VAULT_KEYS_FILE")
    if settings.DEBUG:
        return _development_keyring()
    raise KeyringError(
        "VAULT_KEYS (or VAULT_KEYS_FILE) must be set when DEBUG is false; generate a key "
        "with `manage.py vault_generate_key` (see docs/secrets.md)."
    )


_lock = threading.Lock()
_cached: Keyring | None = None


def get_keyring() -> Keyring:
    """The process-wide keyring, loaded and validated once."""
    global _cached
    keyring = _cached
    if keyring is None:
        with _lock:
            if _cached is None:
                _cached = load_keyring()
            keyring = _cached
    return keyring


def reset_keyring() -> None:
    """Forget the cached keyring (after the configuration changed; used by tests)."""
    global _cached
    with _lock:
        _cached = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting in SETTING_NAMES or setting in {"DEBUG", "VAR_DIR"}:
        reset_keyring()
