from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config.celery import app as celery_app


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    # Long enough that an eager doorbell (which ignores its countdown) finds nothing due;
    # the tests make retries due themselves.
    settings.WEBHOOK_RETRY_SCHEDULE_S = [30, 30, 30]
    settings.WEBHOOK_TIMEOUT_S = 1.0


@pytest.fixture
def eager_celery(settings: Any) -> Iterator[None]:
    """Doorbell tasks run at once in this thread (and this test's transaction)."""
    settings.RUN_EXECUTOR = "celery"
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False
