from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import Agent
from agents.runtime.executors import remember_server_loop
from agents.services import run_create
from agents.streaming import follow
from core.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Run an agent through the configured executor and stream its answer. "
        "Exits non-zero when the run does not succeed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("input")
        parser.add_argument("--json", action="store_true", help="Print events as JSON lines.")
        parser.add_argument("--user", help="Run as this user (default: the first superuser).")

    def handle(self, *args: Any, slug: str, input: str, **options: Any) -> None:  # noqa: A002
        agent = Agent.objects.select_related("provider").filter(slug=slug).first()
        if agent is None:
            raise CommandError(f"No agent {slug!r}.")
        user = self._user(options.get("user"))
        status = asyncio.run(self._run(agent, user, input, as_json=options["json"]))
        if status != "succeeded":
            sys.exit(1)

    def _user(self, username: str | None) -> Any:
        users = get_user_model().objects
        user = (
            users.filter(username=username).first()
            if username
            else users.filter(is_superuser=True).order_by("pk").first()
        )
        if user is None:
            raise CommandError("No such user; run seed_demo or pass --user.")
        return user

    async def _run(self, agent: Agent, user: Any, text: str, *, as_json: bool) -> str:
        # The in-process executor starts the run on this command's own loop.
        remember_server_loop(asyncio.get_running_loop())
        try:
            run, _ = await sync_to_async(run_create)(agent=agent, owner=user, input=text)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        status = "failed"
        async for event in follow(run.id):
            if as_json:
                self.stdout.write(json.dumps(event))
            else:
                self._print_human(event)
            if event["type"].startswith("run.") and event["type"] not in (
                "run.queued",
                "run.started",
                "run.retrying",
            ):
                status = event["type"].removeprefix("run.")
        return status

    def _print_human(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind == "message.delta":
            self.stdout.write(data["delta"], ending="")
            self.stdout.flush()
        elif kind == "message.completed":
            self.stdout.write("")
        elif kind == "tool.call":
            self.stderr.write(f"[tool] {data['name']}({json.dumps(data['args'])})")
        elif kind == "tool.result":
            shown = data.get("output") if data["ok"] else "error: " + str(data.get("error"))
            self.stderr.write(f"[tool] {data['name']} -> {shown}")
        elif kind == "run.failed":
            self.stderr.write(f"[run] failed: {data['error']['code']}: {data['error']['message']}")
        elif kind.startswith("run.") and kind not in ("run.queued", "run.started"):
            self.stderr.write(f"[run] {kind.removeprefix('run.')}")
