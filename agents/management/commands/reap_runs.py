from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.services import runs_reap


class Command(BaseCommand):
    help = "Settle runs whose worker was lost (stale heartbeat) and re-queue forgotten ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=float, default=None, help="Seconds.")

    def handle(self, *args: Any, stale_after: float | None, **options: Any) -> None:
        counts = runs_reap(stale_after_s=stale_after)
        self.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()))
