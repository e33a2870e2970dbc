"""vault_status and vault_rewrap, as an operator runs them during a KEK rotation."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from secrets_vault.models import SecretVersion
from secrets_vault.reveal_services import secret_reveal

pytestmark = pytest.mark.django_db


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=out)
    return out.getvalue()


def test_a_kek_rotation_step_by_step(make_secret: Callable, vault_keys: Any) -> None:
    # given: two secrets under test-a
    make_secret(name="one")
    make_secret(name="two")
    assert "test-a: 2  (active)" in run("vault_status")
    # when: a new key is added and made active
    vault_keys.add("test-b", activate=True)
    status = run("vault_status")
    assert "test-a: 2\n" in status and "run `manage.py vault_rewrap`" in status
    # and: the data keys are re-wrapped
    output = run("vault_rewrap", "--batch-size", "1")
    assert "batch 1: 1 re-wrapped so far" in output
    assert "Done: 2 data key(s) re-wrapped under 'test-b' in 2 batch(es)" in output
    # then: the old key wraps nothing and can be removed
    status = run("vault_status")
    assert "can be removed from the keyring: test-a" in status
    vault_keys.remove("test-a")
    assert secret_reveal(name="one", purpose="t", actor=None)
    assert "Done: 0 data key(s)" in run("vault_rewrap")


def test_status_warns_about_versions_under_a_missing_key(
    make_secret: Callable, vault_keys: Any
) -> None:
    make_secret()
    vault_keys.add("test-b", activate=True)
    vault_keys.remove("test-a")
    assert "test-a: 1  (NOT IN KEYRING)" in run("vault_status")
    with pytest.raises(CommandError, match="could not be re-wrapped"):
        run("vault_rewrap")
    assert SecretVersion.objects.get().kek_id == "test-a"
