"""Print a new keyring entry ``<key_id>:<urlsafe base64 of 32 random bytes>``."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from secrets_vault.keyring import KEY_ID_RE, generate_key_entry


class Command(BaseCommand):
    help = (
        "Print a new vault key entry. Append it to VAULT_KEYS (comma-separated) or to the "
        "VAULT_KEYS_FILE, then point VAULT_ACTIVE_KEY_ID at its id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--id",
            dest="key_id",
            default="",
            help="Key id (default: k<YYYYMMDD>-<4 hex>). 1-32 of [A-Za-z0-9_.-].",
        )

    def handle(self, *args: Any, key_id: str = "", **options: Any) -> None:
        key_id = key_id or f"k{timezone.now():%Y%m%d}-{secrets.token_hex(2)}"
        if not KEY_ID_RE.match(key_id):
            raise CommandError("A key id is 1-32 of [A-Za-z0-9_.-], starting alphanumeric.")
        self.stdout.write(generate_key_entry(key_id))
