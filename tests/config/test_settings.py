"""Settings: production refuses to start without its secrets; the deploy check is clean."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-0123456789",
    "ALLOWED_HOSTS": "switchyard.example.com",
    "SECURE_HSTS_PRELOAD": "true",
    "VAULT_KEYS": "k2026:" + base64.urlsafe_b64encode(bytes(range(32))).decode(),
    "VAULT_ACTIVE_KEY_ID": "k2026",
}


def manage(
    env_overrides: dict[str, str], *args: str, tmp: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(VAR_DIR=str(tmp), **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = manage(env, "check", tmp=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts(tmp_path: Path) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "ALLOWED_HOSTS"}
    result = manage(env, "check", tmp=tmp_path)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def test_the_documented_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    result = manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_debug_mode_generates_and_keeps_a_development_secret_key(tmp_path: Path) -> None:
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = manage({}, "shell", "-v0", "-c", code, tmp=tmp_path)
    second = manage({}, "shell", "-v0", "-c", code, tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == second.stdout.strip()
    assert len(first.stdout.strip()) >= 50
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.strip()


def test_the_embedded_defaults_use_sqlite_and_the_in_process_executor(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.RUN_EXECUTOR,"
        " s.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    out = manage({}, "shell", "-v0", "-c", code, tmp=tmp_path).stdout.split()
    assert out == [
        "django_prometheus.db.backends.sqlite3",
        "inprocess",
        "channels.layers.InMemoryChannelLayer",
    ]


def test_redis_switches_to_celery_and_channels_redis(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.RUN_EXECUTOR, s.CHANNEL_LAYERS['default']['BACKEND'],"
        " s.CELERY_TASK_ACKS_LATE, s.CELERY_WORKER_PREFETCH_MULTIPLIER,"
        # a message is acknowledged at the claim; the reaper re-sends only after the
        # broker would have given an unacknowledged one back
        " s.RUN_RESEND_AFTER_S > s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])"
    )
    out = manage(
        {"REDIS_URL": "redis://127.0.0.1:6379/0"}, "shell", "-v0", "-c", code, tmp=tmp_path
    )
    assert out.stdout.split() == [
        "celery",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "True",
        "1",
        "True",
    ]
