from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.token_services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print it (as the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        token = api_token_create(user=user)
        self.stderr.write(f"New API token for {username} (shown once; store it safely):")
        self.stdout.write(token)
