"""Secrets, versions, reveal and its audit trail, KEK re-wrapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections

from core.errors import ApplicationError
from core.handlers import status_for
from secrets_vault.crypto import SecretValue
from secrets_vault.errors import (
    SecretAccessDeniedError,
    SecretDecryptionError,
    SecretExistsError,
    SecretNotFoundError,
    SecretUnavailableError,
    VersionConflictError,
)
from secrets_vault.models import AccessOutcome, Secret, SecretAccessEvent, SecretVersion
from secrets_vault.reveal_services import RevealCache, areveal_once, reveal_once, secret_reveal
from secrets_vault.services import (
    secret_create,
    secret_delete,
    secret_rotate,
    secret_update,
    secret_version_destroy,
    secret_version_disable,
    secret_version_enable,
    vault_rewrap,
)

pytestmark = pytest.mark.django_db

VALUE = "sk-test-0123456789abcdef"


def reveal(name: str = "openai-key", **kw: Any) -> str:
    kw.setdefault("purpose", "test")
    kw.setdefault("actor", "worker")
    return secret_reveal(name=name, **kw).reveal()


def test_a_new_secret_has_version_one_and_reveals_its_value(make_secret: Callable) -> None:
    # given
    secret = make_secret()
    # when
    value = secret_reveal(name="openai-key", purpose="run:1", actor="worker")
    # then
    assert isinstance(value, SecretValue) and value.reveal() == VALUE
    row = SecretVersion.objects.get(secret=secret)
    assert (row.version, row.state, row.kek_id, row.algorithm, row.format_version) == (
        1,
        "active",
        "test-a",
        "AES-256-GCM",
        1,
    )
    assert row.hint == "cdef" and secret.current_version == 1


def test_a_duplicate_name_is_a_conflict(make_secret: Callable) -> None:
    make_secret()
    with pytest.raises(SecretExistsError):
        make_secret()


@pytest.mark.parametrize("name", ["", "has space", "slash/ed", "-lead", "x" * 129])
def test_an_invalid_name_is_refused(make_secret: Callable, name: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        make_secret(name=name)
    assert caught.value.code == "invalid_name"


def test_an_empty_value_is_refused(make_secret: Callable) -> None:
    with pytest.raises(ApplicationError, match="empty"):
        make_secret(value="")


def test_a_rotation_adds_a_version_that_becomes_current(make_secret: Callable) -> None:
    # given
    secret = make_secret()
    # when
    version = secret_rotate(secret=secret, value="sk-new-value-0000000000", expected_version=1)
    # then
    assert version.version == 2 and secret.current_version == 2
    assert reveal() == "sk-new-value-0000000000"
    assert reveal(version=1) == VALUE


def test_a_rotation_with_a_stale_expected_version_is_a_409(make_secret: Callable) -> None:
    secret = make_secret()
    secret_rotate(secret=secret, value="second-value")
    with pytest.raises(VersionConflictError) as caught:
        secret_rotate(secret="openai-key", value="third-value", expected_version=1)
    assert status_for(caught.value) == 409 and caught.value.code == "version_conflict"
    assert caught.value.details == {"expected_version": 1, "current_version": 2}
    assert Secret.objects.get().current_version == 2


def test_rotating_an_unknown_secret_is_not_found(db: None) -> None:
    with pytest.raises(SecretNotFoundError):
        secret_rotate(secret="nope", value="x")


def test_old_versions_beyond_the_bound_are_deleted(make_secret: Callable, settings: Any) -> None:
    # given
    settings.VAULT_MAX_VERSIONS = 3
    secret = make_secret()
    # when
    for n in range(5):
        secret_rotate(secret=secret, value=f"value-{n}")
    # then
    assert list(secret.versions.values_list("version", flat=True)) == [6, 5, 4]
    with pytest.raises(SecretNotFoundError):
        reveal(version=1)


def test_a_disabled_version_cannot_be_revealed_until_enabled(make_secret: Callable) -> None:
    secret = make_secret()
    secret_version_disable(secret=secret, version=1)
    with pytest.raises(SecretUnavailableError):
        reveal()
    secret_version_enable(secret=secret, version=1)
    assert reveal() == VALUE


def test_a_destroyed_version_cannot_be_revealed_or_enabled(make_secret: Callable) -> None:
    # given
    secret = make_secret()
    secret_rotate(secret=secret, value="second-value")
    # when
    secret_version_destroy(secret=secret, version=1)
    secret_version_destroy(secret=secret, version=1)  # idempotent
    # then
    row = SecretVersion.objects.get(secret=secret, version=1)
    assert row.state == "destroyed" and row.value_ciphertext is None and row.wrapped_dek is None
    assert row.hint == "" and row.destroyed_at is not None
    with pytest.raises(SecretUnavailableError):
        reveal(version=1)
    with pytest.raises(SecretUnavailableError):
        secret_version_enable(secret=secret, version=1)
    with pytest.raises(SecretUnavailableError):
        secret_version_disable(secret=secret, version=1)
    assert reveal() == "second-value"


def test_an_unknown_version_is_not_found(make_secret: Callable) -> None:
    secret = make_secret()
    with pytest.raises(SecretNotFoundError):
        secret_version_disable(secret=secret, version=7)


def test_hints_are_opt_out_per_secret(make_secret: Callable) -> None:
    secret = make_secret()
    make_secret(name="no-hint", show_hint=False)
    assert SecretVersion.objects.get(secret__name="no-hint").hint == ""
    secret_update(secret=secret, show_hint=False)
    assert SecretVersion.objects.get(secret=secret).hint == ""


def test_short_values_get_no_hint(make_secret: Callable) -> None:
    make_secret(value="short-value")
    assert SecretVersion.objects.get().hint == ""


def test_deleting_a_secret_keeps_its_access_log(make_secret: Callable) -> None:
    secret = make_secret()
    reveal()
    secret_delete(secret=secret)
    event = SecretAccessEvent.objects.get()
    assert event.secret_id is None and event.secret_name == "openai-key"
    assert not SecretVersion.objects.exists()


class TestSwappedCiphertexts:
    def test_ciphertexts_swapped_between_two_secrets_do_not_decrypt(
        self, make_secret: Callable
    ) -> None:
        # given
        make_secret(name="one", value="first-secret-value")
        make_secret(name="two", value="second-secret-value")
        a, b = (
            SecretVersion.objects.get(secret__name="one"),
            SecretVersion.objects.get(secret__name="two"),
        )
        # when: both blobs (and the KEK id) moved across
        SecretVersion.objects.filter(pk=a.pk).update(
            value_ciphertext=b.value_ciphertext, wrapped_dek=b.wrapped_dek
        )
        SecretVersion.objects.filter(pk=b.pk).update(
            value_ciphertext=a.value_ciphertext, wrapped_dek=a.wrapped_dek
        )
        # then
        for name in ("one", "two"):
            with pytest.raises(SecretDecryptionError):
                reveal(name)

    def test_ciphertexts_swapped_between_two_versions_do_not_decrypt(
        self, make_secret: Callable
    ) -> None:
        secret = make_secret()
        secret_rotate(secret=secret, value="second-value")
        v1, v2 = SecretVersion.objects.get(version=1), SecretVersion.objects.get(version=2)
        SecretVersion.objects.filter(pk=v1.pk).update(
            value_ciphertext=v2.value_ciphertext, wrapped_dek=v2.wrapped_dek
        )
        SecretVersion.objects.filter(pk=v2.pk).update(value_ciphertext=v1.value_ciphertext)
        with pytest.raises(SecretDecryptionError):
            reveal(version=1)
        with pytest.raises(SecretDecryptionError):
            reveal(version=2)

    def test_a_flipped_byte_in_the_stored_row_does_not_decrypt(self, make_secret: Callable) -> None:
        make_secret()
        row = SecretVersion.objects.get()
        blob = bytearray(row.value_ciphertext)
        blob[20] ^= 0x80
        SecretVersion.objects.filter(pk=row.pk).update(value_ciphertext=bytes(blob))
        with pytest.raises(SecretDecryptionError) as caught:
            reveal()
        assert caught.value.name == "openai-key" and caught.value.version == 1


def test_the_wrong_key_is_a_typed_error(make_secret: Callable, vault_keys: Any) -> None:
    make_secret()
    vault_keys.replace("test-a")
    with pytest.raises(SecretDecryptionError) as caught:
        reveal()
    assert caught.value.reason == "authentication_failed"


def test_a_key_missing_from_the_keyring_is_a_typed_error(
    make_secret: Callable, vault_keys: Any
) -> None:
    make_secret()
    vault_keys.add("test-b", activate=True)
    vault_keys.remove("test-a")
    with pytest.raises(SecretDecryptionError) as caught:
        reveal()
    assert caught.value.reason == "unknown_key"


class TestAccessLog:
    @pytest.fixture
    def setup(self, make_secret: Callable, demo_agent: Any) -> dict[str, Any]:
        from agents.models import Agent

        other = Agent.objects.create(
            slug="other", name="Other", provider=demo_agent.provider, model_name="demo"
        )
        scoped = make_secret(name="scoped", agents=[demo_agent])
        secret = make_secret()
        secret_rotate(secret=secret, value="second-value-abcdefgh")
        secret_version_disable(secret=secret, version=1)
        make_secret(name="broken")
        SecretVersion.objects.filter(secret__name="broken").update(wrapped_dek=b"\0" * 60)
        make_secret(name="gone")
        secret_version_destroy(secret=Secret.objects.get(name="gone"), version=1)
        return {"agent": demo_agent, "other": other, "scoped": scoped}

    @pytest.mark.parametrize(
        ("call", "outcome", "error"),
        [
            ({"name": "openai-key"}, AccessOutcome.SUCCESS, None),
            ({"name": "scoped", "agent": "agent"}, AccessOutcome.SUCCESS, None),
            ({"name": "openai-key", "agent": "other"}, AccessOutcome.SUCCESS, None),
            ({"name": "missing"}, AccessOutcome.NOT_FOUND, SecretNotFoundError),
            ({"name": "openai-key", "version": 9}, AccessOutcome.NOT_FOUND, SecretNotFoundError),
            ({"name": "scoped", "agent": "other"}, AccessOutcome.DENIED, SecretAccessDeniedError),
            (
                {"name": "openai-key", "version": 1},
                AccessOutcome.UNAVAILABLE,
                SecretUnavailableError,
            ),
            ({"name": "gone"}, AccessOutcome.UNAVAILABLE, SecretUnavailableError),
            ({"name": "broken"}, AccessOutcome.DECRYPTION_FAILED, SecretDecryptionError),
        ],
    )
    def test_every_reveal_writes_exactly_one_access_event(
        self,
        setup: dict[str, Any],
        alice: Any,
        call: dict[str, Any],
        outcome: str,
        error: type[Exception] | None,
    ) -> None:
        # given
        if "agent" in call:
            call["agent"] = setup[call["agent"]]
        before = SecretAccessEvent.objects.count()
        # when
        if error is None:
            secret_reveal(**call, purpose="run:abc", actor=alice)
        else:
            with pytest.raises(error):
                secret_reveal(**call, purpose="run:abc", actor=alice)
        # then
        assert SecretAccessEvent.objects.count() == before + 1
        event = SecretAccessEvent.objects.order_by("-id").first()
        assert event.outcome == outcome and event.purpose == "run:abc"
        assert event.actor == alice and event.actor_label == "alice"
        assert event.secret_name == call["name"]

    def test_the_event_records_version_agent_and_a_label_for_system_actors(
        self, setup: dict[str, Any]
    ) -> None:
        secret_reveal(name="scoped", purpose="run:1", actor=None, agent=setup["agent"])
        event = SecretAccessEvent.objects.get()
        assert (event.version, event.agent_slug, event.actor_label, event.actor) == (
            1,
            "demo-assistant",
            "system",
            None,
        )

    def test_a_purpose_is_required(self, setup: dict[str, Any]) -> None:
        with pytest.raises(ApplicationError):
            secret_reveal(name="openai-key", purpose="", actor=None)


def test_a_reveal_takes_two_queries(
    make_secret: Callable, demo_agent: Any, django_assert_num_queries: Any
) -> None:
    # given
    make_secret(agents=[demo_agent])
    # when / then: one read (secret, version, scope) and one insert (the access event)
    with django_assert_num_queries(2):
        secret_reveal(name="openai-key", purpose="run:1", actor="worker", agent=demo_agent)
    with django_assert_num_queries(2):
        secret_reveal(name="openai-key", purpose="run:1", actor="worker")


def test_a_run_that_uses_a_key_twice_decrypts_and_audits_it_once(
    make_secret: Callable, django_assert_num_queries: Any
) -> None:
    # given
    make_secret()
    cache = RevealCache()
    # when
    first = reveal_once(cache, name="openai-key", purpose="run:1", actor="worker")
    with django_assert_num_queries(0):
        second = reveal_once(cache, name="openai-key", purpose="run:1", actor="worker")
    # then
    assert first is second and SecretAccessEvent.objects.count() == 1
    assert VALUE not in repr(cache)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_async_reveal_once_memoises_too(vault_keys: Any) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(secret_create)(name="async-key", value=VALUE)
    cache = RevealCache()
    first = await areveal_once(cache, name="async-key", purpose="run:2", actor="worker")
    second = await areveal_once(cache, name="async-key", purpose="run:2", actor="worker")
    assert first is second and first.reveal() == VALUE
    assert await SecretAccessEvent.objects.acount() == 1
    await sync_to_async(connections.close_all)()


class TestRewrap:
    def test_rewrap_then_removing_the_old_key_leaves_every_version_decryptable(
        self, make_secret: Callable, vault_keys: Any
    ) -> None:
        # given: versions under test-a, some disabled
        for n in range(5):
            secret = make_secret(name=f"s{n}", value=f"value-{n}-0123456789")
            secret_rotate(secret=secret, value=f"value-{n}-second")
        secret_version_disable(secret=Secret.objects.get(name="s0"), version=1)
        values_before = dict(SecretVersion.objects.values_list("pk", "value_ciphertext"))
        # when
        vault_keys.add("test-b", activate=True)
        report = vault_rewrap(batch_size=3)
        vault_keys.remove("test-a")
        # then
        assert report.rewrapped == 10 and report.batches == 4 and report.remaining == 0
        assert set(SecretVersion.objects.values_list("kek_id", flat=True)) == {"test-b"}
        values_after = dict(SecretVersion.objects.values_list("pk", "value_ciphertext"))
        assert {k: bytes(v) for k, v in values_after.items()} == {
            k: bytes(v) for k, v in values_before.items()
        }
        secret_version_enable(secret=Secret.objects.get(name="s0"), version=1)
        for n in range(5):
            assert reveal(f"s{n}") == f"value-{n}-second"
            assert reveal(f"s{n}", version=1) == f"value-{n}-0123456789"

    def test_running_rewrap_twice_changes_nothing_the_second_time(
        self, make_secret: Callable, vault_keys: Any
    ) -> None:
        make_secret()
        vault_keys.add("test-b", activate=True)
        vault_rewrap()
        snapshot = {
            pk: bytes(w) for pk, w in SecretVersion.objects.values_list("pk", "wrapped_dek")
        }
        report = vault_rewrap()
        assert (report.rewrapped, report.batches, report.remaining) == (0, 0, 0)
        assert snapshot == {
            pk: bytes(w) for pk, w in SecretVersion.objects.values_list("pk", "wrapped_dek")
        }

    def test_rewrap_skips_destroyed_versions_and_reports_broken_ones(
        self, make_secret: Callable, vault_keys: Any
    ) -> None:
        # given
        good, broken, gone = (
            make_secret(name="good"),
            make_secret(name="broken"),
            make_secret(name="gone"),
        )
        secret_version_destroy(secret=gone, version=1)
        SecretVersion.objects.filter(secret=broken).update(wrapped_dek=b"\1" * 60)
        vault_keys.add("test-b", activate=True)
        # when
        report = vault_rewrap()
        # then
        assert report.rewrapped == 1 and report.remaining == 1
        assert report.failed == [("broken", 1, "authentication_failed")]
        assert SecretVersion.objects.get(secret=good).kek_id == "test-b"
