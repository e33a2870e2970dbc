"""Readiness checks: each returns (ok, detail) and never raises."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection

Check = tuple[bool, str]


def _timed(fn: Callable[[], None]) -> Check:
    started = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - a failing dependency is a result, not a crash
        return False, f"{type(exc).__name__}: {exc}"[:200]
    return True, f"{(time.perf_counter() - started) * 1000:.1f} ms"


def check_database() -> Check:
    def ping() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    return _timed(ping)


def check_redis() -> Check:
    import redis

    def ping() -> None:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            client.ping()
        finally:
            client.close()

    return _timed(ping)


def check_broker() -> Check:
    """The Celery broker takes connections: runs created meanwhile are committed and
    handed over by the dispatcher once it does (agents.services.runs_dispatch)."""
    from config.celery import app

    def connect() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    return _timed(connect)


def check_channel_layer() -> Check:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    def roundtrip() -> None:
        layer = get_channel_layer()
        assert layer is not None, "no channel layer configured"
        # A publish reaches the layer's backend (Redis); nobody needs to listen.
        async_to_sync(layer.group_send)("health.check", {"type": "health.ping"})

    return _timed(roundtrip)


def readiness() -> tuple[bool, dict[str, Any]]:
    """Whether every dependency answers, and the report /readyz and ``manage.py
    healthcheck`` give: ``{"status": ..., "checks": {name: {"ok", "detail"}}}``."""
    checks = run_checks()
    ok = all(passed for passed, _ in checks.values())
    return ok, {
        "status": "ok" if ok else "unavailable",
        "checks": {
            name: {"ok": passed, "detail": detail} for name, (passed, detail) in checks.items()
        },
    }


def run_checks() -> dict[str, Check]:
    checks = {"database": check_database()}
    if settings.REDIS_URL:
        checks["redis"] = check_redis()
        checks["channel_layer"] = check_channel_layer()
    if settings.RUN_EXECUTOR == "celery":
        checks["broker"] = check_broker()
    return checks
