"""How many versions sit under each KEK, so an operator knows when a key can go."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from secrets_vault.selectors import vault_status_get


class Command(BaseCommand):
    help = "Show the keyring and how many secret versions each KEK wraps."

    def handle(self, *args: Any, **options: Any) -> None:
        status = vault_status_get()
        self.stdout.write(f"Active KEK: {status.active_kek_id}")
        self.stdout.write(f"Keyring ids: {', '.join(status.keyring_ids)}")
        self.stdout.write("Versions (active or disabled) per KEK:")
        ids = sorted(set(status.keyring_ids) | set(status.versions_by_kek))
        for kek_id in ids:
            marks = []
            if kek_id == status.active_kek_id:
                marks.append("active")
            if kek_id not in status.keyring_ids:
                marks.append("NOT IN KEYRING")
            suffix = f"  ({', '.join(marks)})" if marks else ""
            self.stdout.write(f"  {kek_id}: {status.versions_by_kek.get(kek_id, 0)}{suffix}")
        self.stdout.write(f"Destroyed versions (no key needed): {status.destroyed}")
        if status.pending_rewrap:
            self.stdout.write(
                f"{status.pending_rewrap} version(s) are not under the active key: run "
                "`manage.py vault_rewrap`."
            )
        if status.removable_kek_ids:
            self.stdout.write(
                "No version needs these keys; they can be removed from the keyring: "
                + ", ".join(status.removable_kek_ids)
            )
        if status.missing_kek_ids:
            self.stderr.write(
                "Versions under keys missing from the keyring cannot be decrypted: "
                + ", ".join(status.missing_kek_ids)
            )
