from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import Agent, Provider, ProviderKind
from agents.services import api_token_create

DEMO_AGENT_SLUG = "demo-assistant"


class Command(BaseCommand):
    help = (
        "Create the demo provider, the demo-assistant agent and an admin user (idempotent). "
        "Prints the admin password when it generates one, and a new API token on its own line."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))
        parser.add_argument("--no-token", action="store_true", help="Do not create a token.")

    @transaction.atomic
    def handle(self, *args: Any, username: str, no_token: bool, **options: Any) -> None:
        provider, _ = Provider.objects.get_or_create(
            name="demo", defaults={"kind": ProviderKind.DEMO}
        )
        agent, created = Agent.objects.get_or_create(
            slug=DEMO_AGENT_SLUG,
            defaults={
                "name": "Demo assistant",
                "description": "Offline demo: arithmetic, the time, and echoes.",
                "provider": provider,
                "model_name": "demo",
                "instructions": "You are a helpful assistant. Use tools when they help.",
                "tools": ["calculator", "current_time"],
            },
        )
        self.stdout.write(f"agent {agent.slug}: {'created' if created else 'exists'}")
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser(
                username=username, email="", password=password
            )
            shown = "from ADMIN_PASSWORD" if os.environ.get("ADMIN_PASSWORD") else password
            self.stdout.write(f"admin user {username!r} created, password: {shown}")
        else:
            self.stdout.write(f"admin user {username!r} exists (password unchanged)")
        if not no_token:
            self.stdout.write("API token (shown once):")
            self.stdout.write(api_token_create(user=user))
