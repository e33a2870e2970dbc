"""Helpers for the streaming end-to-end tests: runs to watch, SSE and slow clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.e2e.conftest import ROOT, Stack

TERMINAL = {"run.succeeded", "run.failed", "run.cancelled", "run.timed_out", "run.blocked"}


def start_demo_run(stack: Stack, words: int, token: str | None = None) -> str:
    """A real run of the demo agent: about ``words`` + 6 events, 20 ms per word."""
    text = " ".join(f"w{i}" for i in range(words))
    with stack.client(token) as client:
        response = client.post("/api/v1/agents/demo-assistant/runs/", json={"input": text})
    assert response.status_code == 201, response.text
    return response.json()["id"]


class SyntheticRun:
    """``manage.py emit_synthetic_run`` in its own process (it plays the worker)."""

    def __init__(self, stack: Stack, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "emit_synthetic_run", "--wait-stdin", *args],
            cwd=ROOT,
            env={**stack.env, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.run_id = self.proc.stdout.readline().strip()
        assert self.run_id, self.proc.stderr.read() if self.proc.stderr else ""

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 120) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def assert_exactly_once(events: list[dict[str, Any]], run_id: str) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), _describe(seqs)
    assert all(e["run"] == run_id for e in events)
    assert events[-1]["type"] in TERMINAL
    if events[-1]["type"] == "run.succeeded":
        deltas = "".join(e["data"]["delta"] for e in events if e["type"] == "message.delta")
        done = "".join(e["data"]["content"] for e in events if e["type"] == "message.completed")
        assert deltas == done


def _describe(seqs: list[int]) -> str:
    missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
    repeated = sorted({s for s in seqs if seqs.count(s) > 1})
    return f"{len(seqs)} events, missing {missing[:20]}, repeated {repeated[:20]}"


def read_sse(
    stack: Stack,
    run_id: str,
    *,
    token: str | None = None,
    after: int | None = None,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 60,
) -> tuple[int, list[dict[str, Any]], list[str]]:
    """(status, events, comments) of one SSE response, read until it ends or
    ``stop_after`` events."""
    headers = {"Authorization": f"Bearer {token or stack.token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {"after": after} if after is not None else {}
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    url = f"{stack.base_url}/api/v1/runs/{run_id}/stream/"
    with httpx.stream("GET", url, headers=headers, params=params, timeout=timeout) as response:
        if response.status_code != 200:
            return response.status_code, events, comments
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line == "":
                if "data" in fields and fields.get("event") != "error":
                    event = json.loads(fields["data"])
                    assert int(fields["id"]) == event["seq"]
                    assert fields["event"] == event["type"]
                    events.append(event)
                    if stop_after is not None and len(events) >= stop_after:
                        break
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        return response.status_code, events, comments


def metric(stack: Stack, name: str, labels: str = "") -> float:
    """The value of one sample on /metrics (0 when absent)."""
    body = httpx.get(stack.base_url + "/metrics").text
    for line in body.splitlines():
        if line.startswith(name + (("{" + labels + "}") if labels else "")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def small_buffer_socket(stack: Stack, rcvbuf: int = 4096) -> socket.socket:
    """A connected TCP socket whose receive buffer is tiny, so that a client that stops
    reading makes the server's buffers fill after little data."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    host, port = stack.base_url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def wait_until(predicate: Any, timeout: float = 30, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError("condition not met in time")
