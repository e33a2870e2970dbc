"""`make dev`'s worker (`manage.py devworker`) restarts its Celery worker when a watched
Python file changes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, base_env

pytestmark = pytest.mark.e2e


def wait_for(log: Path, text: str, count: int, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if output.count(text) >= count:
            return output
        time.sleep(0.3)
    raise AssertionError(f"{text!r} seen fewer than {count} times:\n{output[-3000:]}")


def test_the_dev_worker_restarts_when_a_python_file_changes(tmp_path: Path, redis_url: str) -> None:
    # Given a dev worker watching a folder, on a queue of its own
    watched = tmp_path / "src"
    watched.mkdir()
    (watched / "module.py").write_text("VALUE = 1\n")
    env = {**base_env(tmp_path), "REDIS_URL": redis_url}
    queue = f"dev{uuid.uuid4().hex[:6]}"
    log = tmp_path / "devworker.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "devworker",
            "--concurrency",
            "1",
            "--queue",
            queue,
            "--watch",
            str(watched),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(log, " ready.", 1)
        # When a watched file changes
        time.sleep(1.5)  # the stat reloader compares modification times once a second
        (watched / "module.py").write_text("VALUE = 2\n")
        # Then the worker is stopped and a new one comes up
        output = wait_for(log, " ready.", 2)
        assert "module.py changed, reloading." in output, output[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
