"""Re-wrap every data key under the active KEK (the values are never decrypted)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from secrets_vault.services import RewrapReport, vault_rewrap


class Command(BaseCommand):
    help = (
        "Re-wrap the data key of every version not under VAULT_ACTIVE_KEY_ID, in batches, "
        "skipping rows other writers hold. Safe to interrupt and re-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args: Any, batch_size: int = 200, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")

        def progress(report: RewrapReport) -> None:
            self.stdout.write(
                f"batch {report.batches}: {report.rewrapped} re-wrapped so far, "
                f"{len(report.failed)} failed"
            )

        report = vault_rewrap(batch_size=batch_size, on_batch=progress)
        for name, version, reason in report.failed:
            self.stderr.write(f"failed: {name} version {version}: {reason}")
        self.stdout.write(
            f"Done: {report.rewrapped} data key(s) re-wrapped under '{report.active_kek_id}' "
            f"in {report.batches} batch(es); {report.remaining} version(s) still under other "
            "keys."
        )
        if report.remaining:
            self.stdout.write(
                "Re-run vault_rewrap for the remaining ones (they were locked by other "
                "writers or failed; see above)."
            )
        if report.failed:
            raise CommandError(f"{len(report.failed)} version(s) could not be re-wrapped.")
