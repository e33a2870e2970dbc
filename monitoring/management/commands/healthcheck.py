"""``manage.py healthcheck``: /readyz from a shell (container and exec probes, cron)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.health import readiness


class Command(BaseCommand):
    help = (
        "Check the database and, with REDIS_URL, Redis and the channel layer, as /readyz "
        "does. Exits 1 when one fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print /readyz's JSON body."
        )

    def handle(self, *args: Any, as_json: bool = False, **options: Any) -> None:
        ok, body = readiness()
        if as_json:
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for name, check in body["checks"].items():
                mark = "ok  " if check["ok"] else "FAIL"
                self.stdout.write(f"{mark} {name}: {check['detail']}")
        if not ok:
            failing = [name for name, check in body["checks"].items() if not check["ok"]]
            raise CommandError(f"not ready: {', '.join(failing)}")
