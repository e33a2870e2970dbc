"""What the benchmarks share: production settings for the stacks they boot."""

from __future__ import annotations

import base64
import os
import uuid


def production_env(*, database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    """DEBUG off (no query log, no debug cursors), over plain HTTP on 127.0.0.1."""
    return {
        "DEBUG": "false",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "SECURE_SSL_REDIRECT": "false",
        "VAULT_KEYS": "bench:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "VAULT_ACTIVE_KEY_ID": "bench",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEMO_MODEL_DELAY_MS": "0",
        "CHANNEL_PREFIX": prefix,
        "CELERY_QUEUE": prefix,
        "LOG_LEVEL": "WARNING",
        # One user drives every run: the default 6000/min (100/s) would cap the benchmark.
        "API_THROTTLE_RATE": "1000000/min",
    }
