"""Real processes for end-to-end tests: daphne, a Celery worker, and their own database.

Each stack gets a database of its own (a fresh PostgreSQL database, or a SQLite file in a
temporary folder for the embedded mode), is migrated and seeded by the real management
commands, and is driven only through HTTP and WebSockets.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import require_service
from tests.fakes.fixtures import running_fake_provider
from tests.fakes.provider_server import FakeProviderServer

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = os.environ.get("E2E_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    base_url: str
    ws_url: str
    token: str
    env: dict[str, str]
    admin_password: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=10,
        )

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def user_token(self, username: str, *, superuser: bool = False) -> str:
        code = (
            "from django.contrib.auth import get_user_model as g;"
            f"u,_=g().objects.get_or_create(username={username!r});"
            f"u.is_staff=u.is_superuser={superuser};u.save();"
            "from agents.token_services import api_token_create as t;print(t(user=u))"
        )
        return self.manage("shell", "-v0", "-c", code).stdout.strip().splitlines()[-1]

    def start(self, name: str, args: list[str], tmp: Path) -> subprocess.Popen[bytes]:
        log = tmp / f"{name}.log"
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def tail_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs if p.exists())


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VAR_DIR=str(tmp / "var"),
        DEMO_MODEL_DELAY_MS="20",
        WS_PING_INTERVAL_S="1",  # the streaming tests wait for keepalives
        ADMIN_PASSWORD="e2e-admin-password",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",  # production's format, which tests/e2e/test_log_trail_e2e.py reads
        # The tests' webhook receivers listen on 127.0.0.1.
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8",
        # ... and so does the fake provider that the connection check calls.
        PROVIDER_CHECK_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8",
    )
    return env


def wait_ready(stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for proc in stack.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a process exited early\n{stack.tail_logs()}")
        try:
            last = httpx.get(stack.base_url + "/readyz", timeout=2)
            if last.status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"stack not ready: {last!r}\n{stack.tail_logs()}")


def seeded_stack(env: dict[str, str]) -> tuple[Stack, int]:
    """A migrated, seeded database and the Stack that will serve it on a free port."""
    port = free_port()
    stack = Stack(
        base_url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}",
        token="",
        env=env,
        admin_password=env["ADMIN_PASSWORD"],
    )
    stack.manage("migrate", "--noinput", "-v0")
    # No example runs: tests count their own runs (the console's tests add them).
    seeded = stack.manage("seed_demo", "--no-examples").stdout.strip().splitlines()
    stack.token = seeded[-1]
    assert re.fullmatch(r"sy_[0-9a-f]{64}", stack.token), seeded
    return stack, port


def daphne_args(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "daphne",
        "-e",  # as scripts/run.sh: a listen backlog a burst of connections fits in
        f"tcp:port={port}:interface=127.0.0.1:backlog=2048",
        "config.asgi:application",
    ]


def worker_args(
    *,
    concurrency: int,
    queue: str | None = None,
    name: str = "worker",
    app: str = "config",
    level: str = "info",
) -> list[str]:
    """A Celery threads-pool worker's command line (``app``: the benchmarks' own apps).

    With ``queue`` (a stack's CELERY_QUEUE) it consumes that queue's control queue first,
    then the runs, as the settings' CELERY_TASK_QUEUES make a worker without -Q do."""
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-l",
        level,
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    return args + (["-Q", f"{queue}.control,{queue}"] if queue else [])


def boot(env: dict[str, str], tmp: Path, *, celery: bool, concurrency: int = 4) -> Stack:
    stack, port = seeded_stack(env)
    stack.start("daphne", daphne_args(port), tmp)
    if celery:
        queue = env.get("CELERY_QUEUE")
        stack.start("celery", worker_args(concurrency=concurrency, queue=queue), tmp)
    try:
        wait_ready(stack)
    except Exception:
        stack.stop()
        raise
    return stack


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def private_distributed_stack(tmp: Path, redis_url: str, **settings: str) -> Iterator[Stack]:
    """daphne + a Celery worker on a database, channel prefix and queue of their own,
    with ``settings`` added to the environment; the database is dropped afterwards."""
    require_service("PostgreSQL", _pg_available())
    db_name = f"switchyard_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = base_env(tmp)
    env["DATABASE_URL"] = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db_name}"
    env["REDIS_URL"] = redis_url
    # Own channel prefix and queue: other stacks may share this Redis.
    env["CHANNEL_PREFIX"] = f"e2e{uuid.uuid4().hex[:6]}"
    env["CELERY_QUEUE"] = env["CHANNEL_PREFIX"]
    env["WORKER_METRICS_PORT"] = str(free_port())
    env.update(settings)
    try:
        stack = boot(env, tmp, celery=True)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def distributed_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    with private_distributed_stack(tmp_path_factory.mktemp("distributed"), redis_url) as stack:
        yield stack


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("embedded")
    stack = boot(base_env(tmp), tmp, celery=False)
    yield stack
    stack.stop()


@pytest.fixture(params=["distributed", "embedded"])
def stack(request: pytest.FixtureRequest) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")


# --- A real browser: Debian's chromium driven by Playwright (no browser download) ----

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("Playwright (pip install playwright)", False)
    require_service("Chromium (apt-get install chromium)", shutil.which(CHROMIUM) is not None)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderServer]:
    """One fake OpenAI-compatible server per test module, for a stack's provider to use."""
    with running_fake_provider() as server:
        yield server
