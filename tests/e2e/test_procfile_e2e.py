"""deploy: the Procfile that `honcho start` runs (web, worker, beat) serves a ready stack
that executes runs, and the systemd units are valid unit files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import require_service
from tests.e2e.conftest import PG_ADMIN_DSN, ROOT, _pg_available, base_env, free_port, seeded_stack
from tests.e2e.test_run_stream_e2e import start_run, wait_for_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url() -> object:
    require_service("PostgreSQL", _pg_available())
    name = f"switchyard_procfile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_honcho_start_runs_web_worker_and_beat_from_the_procfile(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # Given a migrated, seeded database and the environment an operator's .env would hold
    env = base_env(tmp_path)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CHANNEL_PREFIX=f"proc{uuid.uuid4().hex[:6]}",
        WORKER_METRICS_PORT=str(free_port()),
        WORKER_CONCURRENCY="2",
    )
    env["CELERY_QUEUE"] = env["CHANNEL_PREFIX"]
    stack, port = seeded_stack(env)
    log = (tmp_path / "honcho.log").open("wb")
    # When honcho starts the Procfile
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Then /readyz answers 200 with every check up
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline and honcho.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{stack.base_url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            time.sleep(0.3)
        output = (tmp_path / "honcho.log").read_text()
        assert ready is not None and ready.status_code == 200, output[-3000:]
        assert all(check["ok"] for check in ready.json()["checks"].values()), ready.json()
        # And its worker executes a run, and all three processes are up
        run = start_run(stack, "What is 2+3?")
        assert wait_for_status(stack, run["id"], timeout=60)["status"] == "succeeded"
        output = (tmp_path / "honcho.log").read_text()
        for name in ("web.1", "worker.1", "beat.1"):
            assert f"{name} started (pid=" in output, output[-3000:]
        # beat schedules the reaper at once, and the worker runs it
        deadline = time.monotonic() + 30
        while "Sending due task reap-runs" not in output and time.monotonic() < deadline:
            time.sleep(0.5)
            output = (tmp_path / "honcho.log").read_text()
        assert "Sending due task reap-runs" in output, output[-3000:]
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)


def test_the_systemd_units_are_valid(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require_service("systemd-analyze", analyze is not None)
    units = []
    for source in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        # Point the units at this checkout so verify can find the interpreter.
        text = source.read_text().replace("/opt/switchyard", str(ROOT))
        instance = {"switchyard-web@.service": "8001", "switchyard-worker@.service": "1"}
        name = (
            source.name.replace("@.", f"@{instance[source.name]}.")
            if "@." in source.name
            else source.name
        )
        (tmp_path / source.name).write_text(text)
        if name != source.name:
            (tmp_path / name).symlink_to(tmp_path / source.name)
        units.append(str(tmp_path / name))
    assert len(units) == 4
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
