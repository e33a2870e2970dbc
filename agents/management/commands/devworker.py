"""A Celery worker for development that restarts when a Python file changes (``make dev``).

Celery has no reloader of its own; Django's (the one ``runserver`` uses) watches the
source tree here and restarts this command, which runs the worker as a child process and
stops it on the way out.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import autoreload

WATCHED = ("config", "core", "agents", "secrets_vault", "moderation", "monitoring")


def worker_queues(runs_queue: str) -> list[str]:
    """The queues a worker consumes, in the order it serves them: control, then runs."""
    return [f"{runs_queue}.control", runs_queue]


def _watcher(extra: list[str]) -> Any:
    def watch_sources(sender: autoreload.BaseReloader, **kwargs: Any) -> None:
        root = Path(settings.BASE_DIR)
        for folder in [root / name for name in WATCHED] + [Path(e) for e in extra]:
            sender.watch_dir(folder, "**/*.py")

    return watch_sources


class Command(BaseCommand):
    help = "Run a Celery worker that restarts when a Python file changes (development)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--loglevel", default="info")
        parser.add_argument("--watch", action="append", default=[], help="Another folder.")
        parser.add_argument(
            "--queue", help="Consume this runs queue and its control queue (default: CELERY_QUEUE)."
        )

    def handle(
        self,
        *args: Any,
        concurrency: int,
        loglevel: str,
        watch: list[str],
        queue: str | None,
        **options: Any,
    ) -> None:
        if not settings.REDIS_URL:
            raise CommandError(
                "A Celery worker needs REDIS_URL (without it runs execute in daphne)."
            )
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-l",
            loglevel,
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "-Q",
            # control work ahead of runs (docs/runtime.md)
            ",".join(worker_queues(queue or settings.CELERY_TASK_DEFAULT_QUEUE)),
        ]
        autoreload.autoreload_started.connect(_watcher(watch), weak=False)
        autoreload.run_with_reloader(self._serve, command)

    def _serve(self, command: list[str]) -> None:
        worker = subprocess.Popen(command)
        # The reloader ends this process with sys.exit(3) on a change; take the worker along.
        atexit.register(_stop, worker)
        worker.wait()


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
