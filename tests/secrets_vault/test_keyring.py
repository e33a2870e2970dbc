"""Keyring configuration: validation, files, the development default, startup."""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command

from secrets_vault.keyring import (
    KeyringError,
    generate_key_entry,
    get_keyring,
    load_keyring,
    parse_keyring,
    reset_keyring,
)


def key_text(n: int = 32) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).decode()


def test_it_parses_several_keys_and_the_active_one() -> None:
    text = f"a:{key_text()}, b:{key_text()}\nc:{key_text().rstrip('=')}"
    keyring = parse_keyring(text, active_id="b", source="VAULT_KEYS")
    assert keyring.ids == ["a", "b", "c"]
    assert keyring.active_id == "b" and len(keyring.active_key) == 32


def test_a_single_key_is_active_without_naming_it() -> None:
    assert parse_keyring(f"only:{key_text()}", active_id="", source="X").active_id == "only"


@pytest.mark.parametrize(
    ("text", "active", "message"),
    [
        ("", "", "holds no keys"),
        ("{bare}", "", "entry 1 is not of the form"),
        ("a:{key}, a:{key}", "a", "appears more than once"),
        ("a:{short}", "a", "is 16 bytes; AES-256 needs 32"),
        ("a:!!!not-base64!!!", "a", "not valid urlsafe base64"),
        ("a:{key},b:{key}", "", "VAULT_ACTIVE_KEY_ID must name"),
        ("a:{key}", "z", "VAULT_ACTIVE_KEY_ID 'z' is not in VAULT_KEYS"),
        ("bad id:{key}", "", "entry 1 is not of the form"),
    ],
)
def test_it_rejects_an_invalid_keyring_without_echoing_key_bytes(
    text: str, active: str, message: str
) -> None:
    key, short = key_text(), key_text(16)
    text = text.format(key=key, short=short, bare=key)
    with pytest.raises(KeyringError) as caught:
        parse_keyring(text, active_id=active, source="VAULT_KEYS")
    assert message in str(caught.value)
    assert key not in str(caught.value) and short not in str(caught.value)


def test_the_keyring_repr_shows_ids_only() -> None:
    entry = generate_key_entry("k1")
    keyring = parse_keyring(entry, active_id="k1", source="VAULT_KEYS")
    assert entry.split(":", 1)[1] not in repr(keyring) and "k1" in repr(keyring)


def test_it_reads_the_keyring_from_a_file(settings: Any, tmp_path: Path) -> None:
    # given
    path = tmp_path / "keys"
    path.write_text(generate_key_entry("file-1") + "\n" + generate_key_entry("file-2") + "\n")
    settings.VAULT_KEYS, settings.VAULT_KEYS_FILE = "", str(path)
    settings.VAULT_ACTIVE_KEY_ID = "file-2"
    # when
    keyring = get_keyring()
    # then
    assert keyring.ids == ["file-1", "file-2"] and keyring.active_id == "file-2"


def test_an_unreadable_keys_file_names_the_variable(settings: Any, tmp_path: Path) -> None:
    settings.VAULT_KEYS, settings.VAULT_KEYS_FILE = "", str(tmp_path / "missing")
    with pytest.raises(KeyringError, match="VAULT_KEYS_FILE"):
        load_keyring()


def test_setting_both_sources_is_an_error(settings: Any, tmp_path: Path) -> None:
    settings.VAULT_KEYS_FILE = str(tmp_path / "keys")
    with pytest.raises(KeyringError, match="not both"):
        load_keyring()


def test_without_keys_and_with_debug_off_startup_stops_naming_the_variable(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    for name in ("VAULT_KEYS", "VAULT_KEYS_FILE", "VAULT_ACTIVE_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    settings.VAULT_KEYS = settings.VAULT_KEYS_FILE = settings.VAULT_ACTIVE_KEY_ID = None
    settings.DEBUG = False
    # when / then: the app's startup hook refuses to start
    with pytest.raises(KeyringError, match="VAULT_KEYS"):
        apps.get_app_config("secrets_vault").ready()


def test_an_invalid_keyring_stops_startup(settings: Any) -> None:
    settings.VAULT_KEYS = "k1:" + key_text(31)
    with pytest.raises(KeyringError, match="31 bytes"):
        apps.get_app_config("secrets_vault").ready()


def test_with_debug_on_a_development_keyring_is_generated_once_with_a_warning(
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given
    for name in ("VAULT_KEYS", "VAULT_KEYS_FILE", "VAULT_ACTIVE_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    settings.VAULT_KEYS = settings.VAULT_KEYS_FILE = settings.VAULT_ACTIVE_KEY_ID = None
    settings.DEBUG, settings.VAR_DIR = True, tmp_path
    # when
    with caplog.at_level(logging.WARNING, logger="secrets_vault.keyring"):
        first = get_keyring()
        reset_keyring()
        second = get_keyring()
    # then
    path = tmp_path / "vault_keys"
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600
    assert first.keys == second.keys and first.active_id == "dev1"
    warnings = [r for r in caplog.records if "development vault keyring" in r.getMessage()]
    assert len(warnings) == 1
    assert path.read_text().split(":", 1)[1].strip() not in caplog.text


def test_vault_generate_key_prints_a_valid_entry(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("vault_generate_key", "--id", "k2025")
    entry = capsys.readouterr().out.strip()
    keyring = parse_keyring(entry, active_id="k2025", source="VAULT_KEYS")
    assert keyring.ids == ["k2025"]


def test_vault_generate_key_names_the_key_by_date_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("vault_generate_key")
    key_id = capsys.readouterr().out.strip().split(":", 1)[0]
    assert key_id.startswith("k2") and len(key_id) == len("k20250101-abcd")
