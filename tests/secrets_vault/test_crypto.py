"""Envelope encryption: round trip, binding by associated data, fail-closed decryption."""

from __future__ import annotations

import copy
import json
import pickle
import uuid
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from kombu.utils.json import dumps as kombu_dumps
from rest_framework.utils.encoders import JSONEncoder as DRFJSONEncoder

from secrets_vault.crypto import (
    WRAPPED_DEK_BYTES,
    EncryptedRecord,
    SecretValue,
    decrypt_value,
    encrypt_value,
    rewrap_dek,
)
from secrets_vault.errors import SecretDecryptionError
from secrets_vault.keyring import get_keyring

VALUE = "sk-live-0123456789abcdefghij"


def encrypt(secret_id: uuid.UUID, version: int = 1, value: str = VALUE) -> EncryptedRecord:
    return encrypt_value(
        secret_id=secret_id, version=version, value=SecretValue(value), keyring=get_keyring()
    )


def decrypt(
    record: EncryptedRecord, secret_id: uuid.UUID, version: int = 1, **override: Any
) -> SecretValue:
    fields = {
        "value_ciphertext": record.value_ciphertext,
        "wrapped_dek": record.wrapped_dek,
        "kek_id": record.kek_id,
        "algorithm": record.algorithm,
        "format_version": record.format_version,
        **override,
    }
    return decrypt_value(
        name="openai-key", secret_id=secret_id, version=version, keyring=get_keyring(), **fields
    )


def flipped(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


def test_it_decrypts_what_it_encrypted() -> None:
    # given
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    # when
    value = decrypt(record, secret_id)
    # then
    assert value.reveal() == VALUE
    assert record.kek_id == "test-a"
    assert len(record.wrapped_dek) == WRAPPED_DEK_BYTES
    assert VALUE.encode() not in record.value_ciphertext


def test_each_version_gets_a_fresh_data_key_and_nonce() -> None:
    secret_id = uuid.uuid4()
    first, second = encrypt(secret_id), encrypt(secret_id)
    assert first.value_ciphertext != second.value_ciphertext
    assert first.wrapped_dek != second.wrapped_dek


@pytest.mark.parametrize("field", ["value_ciphertext", "wrapped_dek"])
def test_it_rejects_every_single_flipped_byte_of_each_ciphertext_field(field: str) -> None:
    # given
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    blob = getattr(record, field)
    # when / then: no position is unauthenticated
    for index in range(len(blob)):
        with pytest.raises(SecretDecryptionError) as caught:
            decrypt(record, secret_id, **{field: flipped(blob, index)})
        assert caught.value.reason == "authentication_failed"


@pytest.mark.parametrize("field", ["value_ciphertext", "wrapped_dek"])
@pytest.mark.parametrize("keep", [0, 5, 27, -1])
def test_it_rejects_a_truncated_record(field: str, keep: int) -> None:
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    blob = getattr(record, field)
    with pytest.raises(SecretDecryptionError) as caught:
        decrypt(record, secret_id, **{field: blob[:keep]})
    assert caught.value.reason in {"truncated", "authentication_failed"}


def test_it_rejects_a_missing_ciphertext() -> None:
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    with pytest.raises(SecretDecryptionError) as caught:
        decrypt(record, secret_id, value_ciphertext=None)
    assert caught.value.reason == "missing"


def test_a_ciphertext_moved_to_another_secret_or_version_does_not_decrypt() -> None:
    # given
    secret_id = uuid.uuid4()
    record = encrypt(secret_id, version=3)
    # then: other secret, other version
    with pytest.raises(SecretDecryptionError):
        decrypt(record, uuid.uuid4(), version=3)
    with pytest.raises(SecretDecryptionError):
        decrypt(record, secret_id, version=4)


def test_a_value_combined_with_another_versions_data_key_does_not_decrypt() -> None:
    secret_id = uuid.uuid4()
    v1, v2 = encrypt(secret_id, 1), encrypt(secret_id, 2)
    with pytest.raises(SecretDecryptionError):
        decrypt(v1, secret_id, 1, wrapped_dek=v2.wrapped_dek)


def test_relabelling_the_kek_id_fails_even_with_the_same_key_bytes(vault_keys: Any) -> None:
    # given: a second id holding the very same bytes as test-a
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    same = vault_keys.entries["test-a"].split(":", 1)[1]
    vault_keys.entries["alias"] = f"alias:{same}"
    vault_keys.apply()
    # then: the wrapped key is bound to its KEK id
    with pytest.raises(SecretDecryptionError):
        decrypt(record, secret_id, kek_id="alias")


def test_an_unknown_kek_id_is_a_typed_error_naming_it() -> None:
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    with pytest.raises(SecretDecryptionError) as caught:
        decrypt(record, secret_id, kek_id="gone")
    assert caught.value.reason == "unknown_key"
    assert "gone" in str(caught.value)
    assert "openai-key" in str(caught.value) and "version 1" in str(caught.value)


def test_the_wrong_key_is_a_typed_error_that_names_no_key_material(vault_keys: Any) -> None:
    # given
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    old_material = vault_keys.material()
    # when: same id, other bytes
    vault_keys.replace("test-a")
    with pytest.raises(SecretDecryptionError) as caught:
        decrypt(record, secret_id)
    # then
    text = str(caught.value) + repr(caught.value)
    for material in old_material + vault_keys.material():
        assert material not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_unsupported_algorithm_or_format_fails_closed() -> None:
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    with pytest.raises(SecretDecryptionError):
        decrypt(record, secret_id, algorithm="NONE")
    with pytest.raises(SecretDecryptionError):
        decrypt(record, secret_id, format_version=99)


def test_rewrap_changes_only_the_wrapped_key_and_its_id(vault_keys: Any) -> None:
    # given
    secret_id = uuid.uuid4()
    record = encrypt(secret_id)
    vault_keys.add("test-b", activate=True)
    # when
    wrapped, kek_id = rewrap_dek(
        name="openai-key",
        secret_id=secret_id,
        version=1,
        wrapped_dek=record.wrapped_dek,
        kek_id="test-a",
        algorithm=record.algorithm,
        format_version=record.format_version,
        keyring=get_keyring(),
    )
    vault_keys.remove("test-a")
    # then
    assert kek_id == "test-b"
    assert decrypt(record, secret_id, wrapped_dek=wrapped, kek_id=kek_id).reveal() == VALUE


class TestSecretValue:
    def test_it_prints_a_mask_in_repr_str_and_format(self) -> None:
        value = SecretValue(VALUE)
        for text in (repr(value), str(value), f"{value}", f"{value!r}", f"{value:>40}"):
            assert VALUE not in text and "****" in text
        assert VALUE not in repr([value]) and VALUE not in repr({"k": value})

    def test_it_refuses_json_serialisation(self) -> None:
        value = SecretValue(VALUE)
        for encoder in (None, DjangoJSONEncoder, DRFJSONEncoder):
            with pytest.raises(TypeError):
                json.dumps({"v": value}, cls=encoder)
        with pytest.raises(TypeError):
            kombu_dumps({"v": value})

    def test_it_refuses_pickling(self) -> None:
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError):
                pickle.dumps(SecretValue(VALUE), protocol=protocol)

    def test_it_is_immutable_and_copies_to_itself(self) -> None:
        value = SecretValue(VALUE)
        with pytest.raises(AttributeError):
            value._value = "x"  # type: ignore[misc]
        assert copy.deepcopy(value) is value and copy.copy(value) is value

    def test_it_compares_by_value_and_is_unhashable(self) -> None:
        assert SecretValue("a" * 20) == SecretValue("a" * 20)
        assert SecretValue("a" * 20) != SecretValue("b" * 20)
        with pytest.raises(TypeError):
            hash(SecretValue("a"))

    @pytest.mark.parametrize(
        ("value", "hint"), [("x" * 15, ""), ("abcdefghijklmnop", "mnop"), ("", "")]
    )
    def test_its_hint_is_at_most_the_last_four_characters_of_long_values(
        self, value: str, hint: str
    ) -> None:
        assert SecretValue(value).hint() == hint
