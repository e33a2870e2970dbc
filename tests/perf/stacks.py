"""What the benchmarks share: production settings for the stacks they boot."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg


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


@dataclass
class BenchSetup:
    tmp: Path
    db: str  # the fresh database's name
    dsn: str
    prefix: str  # channel prefix and Celery queue of this run
    env: dict[str, str]  # the stack's environment (production settings)


@contextlib.contextmanager
def bench_setup(name: str, *, pg_admin: str, redis_url: str) -> Iterator[BenchSetup]:
    """A fresh PostgreSQL database, and this process's Django configured like the stack
    (some benchmarks also run Django code here); the database is dropped at the end."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    db = f"switchyard_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = pg_admin.rsplit("/", 1)[0] + f"/{db}"
    prefix = f"{name}{uuid.uuid4().hex[:6]}"
    production = production_env(database_url=dsn, redis_url=redis_url, prefix=prefix)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp / "var"), **production
    )
    import django

    django.setup()
    from tests.e2e.conftest import base_env  # it imports DRF's test module: after setup()

    env = base_env(tmp)
    env.update(production)
    try:
        yield BenchSetup(tmp=tmp, db=db, dsn=dsn, prefix=prefix, env=env)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
