"""A Celery app with one no-op task, configured like the platform's (``config/settings.py``:
late acks, prefetch 1, JSON, no result backend), for ``bench_floor``'s Celery floor.

The task only counts itself in Redis, so the benchmark knows when all were consumed.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
COUNTER = os.environ.get("FLOOR_COUNTER", "bench-floor-done")

app = Celery("floor", broker=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=os.environ.get("FLOOR_QUEUE", "bench-floor"),
    worker_hijack_root_logger=False,
)
_redis = redis.Redis.from_url(REDIS_URL)


@app.task(name="floor.noop")
def noop(run_id: str) -> None:
    _redis.incr(COUNTER)
