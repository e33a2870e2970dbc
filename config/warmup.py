"""Warm a server or worker process before it takes work.

A fresh process's first run used to pay for two things on the spot: importing the
runtime (pydantic-ai and the provider SDKs, 2-4 s; on daphne that import ran on the event
loop and stalled every stream of the process) and building the moderation engine's shared
tables (~1 s). Both now happen once, before daphne listens and before a worker consumes.
"""

from __future__ import annotations

import time

import structlog
from django.db import DatabaseError

log = structlog.get_logger(__name__)


def warm_process() -> None:
    started = time.perf_counter()
    import agents.runtime.engine  # noqa: F401  (the import is the point)
    from moderation.services import policies_warm

    try:
        policies = policies_warm()
    except DatabaseError as exc:
        # A database that is down at start must not keep the process from starting: the
        # readiness check reports it, and the first run compiles what it needs.
        policies = 0
        log.warning("warm_up_skipped_policies", error=type(exc).__name__)
    finally:
        from django.db import connections

        connections.close_all()
    log.info(
        "process_warmed", policies=policies, took_ms=round((time.perf_counter() - started) * 1000)
    )
