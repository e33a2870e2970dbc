from __future__ import annotations

import sys

from django.apps import AppConfig

# Commands that must start without a valid keyring (to make one, or to explain how).
KEYLESS_COMMANDS = {"vault_generate_key", "help", "--help", "-h", "version", "--version"}


class SecretsVaultConfig(AppConfig):
    name = "secrets_vault"
    verbose_name = "Secrets vault"

    def ready(self) -> None:
        """Validate the keyring at startup: a bad one stops the process, naming the variable."""
        if len(sys.argv) > 1 and sys.argv[1] in KEYLESS_COMMANDS:
            return
        from secrets_vault.keyring import get_keyring

        get_keyring()
