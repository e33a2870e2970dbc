"""Writers meeting on real PostgreSQL rows: check-and-set and SKIP LOCKED re-wrapping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import close_old_connections, connection, connections, transaction

from secrets_vault.errors import VersionConflictError
from secrets_vault.models import Secret, SecretVersion
from secrets_vault.reveal_services import secret_reveal
from secrets_vault.services import secret_create, secret_rotate, vault_rewrap
from tests.conftest import require_service

pytestmark = [pytest.mark.django_db(transaction=True)]

WRITERS = 8


@pytest.fixture(autouse=True)
def _postgres_only(db: None) -> None:
    # Skips outside CI with a message; fails under CI=true, where PostgreSQL must be there.
    require_service("PostgreSQL (row locking; set DATABASE_URL)", connection.vendor == "postgresql")


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_rotations_with_the_same_expected_version_have_exactly_one_winner() -> None:
    # given
    secret_create(name="contended", value="initial-value-000000")
    # when
    results = in_threads(
        WRITERS,
        lambda i: secret_rotate(secret="contended", value=f"value-{i}", expected_version=1),
    )
    # then
    winners = [r for r in results if isinstance(r, SecretVersion)]
    losers = [r for r in results if isinstance(r, VersionConflictError)]
    assert len(winners) == 1 and len(losers) == WRITERS - 1, results
    assert all(exc.current == 2 for exc in losers)
    assert Secret.objects.get().current_version == 2
    assert SecretVersion.objects.count() == 2
    index = results.index(winners[0])
    assert secret_reveal(name="contended", purpose="t", actor=None).reveal() == f"value-{index}"


def test_concurrent_rotations_without_check_and_set_get_distinct_version_numbers() -> None:
    secret_create(name="contended", value="initial-value-000000")
    results = in_threads(WRITERS, lambda i: secret_rotate(secret="contended", value=f"v{i}"))
    numbers = sorted(r.version for r in results)
    assert numbers == list(range(2, WRITERS + 2)), results
    assert Secret.objects.get().current_version == WRITERS + 1


def test_rewrap_skips_rows_another_writer_holds_and_a_rerun_finishes_them(
    vault_keys: Any,
) -> None:
    # given: three versions under test-a, and another session holding one row's lock
    for n in range(3):
        secret_create(name=f"s{n}", value=f"value-{n}")
    held = SecretVersion.objects.get(secret__name="s1")
    vault_keys.add("test-b", activate=True)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                SecretVersion.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        # when
        report = vault_rewrap(batch_size=1)
    finally:
        release.set()
        holder.join(10)
    # then
    assert report.rewrapped == 2 and report.remaining == 1
    assert SecretVersion.objects.get(pk=held.pk).kek_id == "test-a"
    close_old_connections()
    again = vault_rewrap()
    assert again.rewrapped == 1 and again.remaining == 0
    vault_keys.remove("test-a")
    for n in range(3):
        assert secret_reveal(name=f"s{n}", purpose="t", actor=None).reveal() == f"value-{n}"
