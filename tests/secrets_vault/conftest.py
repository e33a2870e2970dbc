"""Vault fixtures: a fresh test keyring per test, secret factories, canary values."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from secrets_vault.keyring import generate_key_entry, reset_keyring


class Keys:
    """Switch the keyring a test runs with (through settings, as an operator would)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.entries: dict[str, str] = {}

    def add(self, key_id: str, *, activate: bool = False) -> str:
        self.entries[key_id] = generate_key_entry(key_id)
        if activate or not getattr(self.settings, "VAULT_ACTIVE_KEY_ID", ""):
            self.settings.VAULT_ACTIVE_KEY_ID = key_id
        self.apply()
        return self.entries[key_id]

    def remove(self, key_id: str) -> None:
        del self.entries[key_id]
        self.apply()

    def activate(self, key_id: str) -> None:
        self.settings.VAULT_ACTIVE_KEY_ID = key_id
        self.apply()

    def replace(self, key_id: str) -> None:
        """Same id, different key bytes: the "wrong key" case."""
        self.entries[key_id] = generate_key_entry(key_id)
        self.apply()

    def material(self) -> list[str]:
        """Every key's base64 text and raw bytes (as latin-1 text), to search leaks for."""
        import base64

        found = []
        for entry in self.entries.values():
            encoded = entry.split(":", 1)[1]
            found.append(encoded)
            found.append(base64.urlsafe_b64decode(encoded).hex())
        return found

    def apply(self) -> None:
        self.settings.VAULT_KEYS = ",".join(self.entries.values())
        self.settings.VAULT_KEYS_FILE = ""
        reset_keyring()


@pytest.fixture(autouse=True)
def vault_keys(settings: Any) -> Iterator[Keys]:
    settings.VAULT_ACTIVE_KEY_ID = ""
    keys = Keys(settings)
    keys.add("test-a")
    yield keys
    reset_keyring()


@pytest.fixture
def canary() -> Callable[[], str]:
    """Unique values that must never appear anywhere but in ciphertext."""

    def make() -> str:
        return f"sk-canary-{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def make_secret(db: None, bob: Any) -> Callable[..., Any]:
    from secrets_vault.services import secret_create

    def make(name: str = "openai-key", value: str = "sk-test-0123456789abcdef", **kw: Any) -> Any:
        kw.setdefault("actor", bob)
        return secret_create(name=name, value=value, **kw)

    return make


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
