"""A real HTTP server on 127.0.0.1 for the outbound-HTTP tests, and a guard that proves a
refused request never opened a socket."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.quiet_http import QuietHandler

# Compresses 20 MB of zeros to about 20 KB: a small response that would be huge decoded.
GZIP_BOMB = gzip.compress(b"\0" * 20_000_000)
BIG_BODY = b"x" * 1_000_000


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    port: int
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str = "/echo", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class Handler(QuietHandler):
    server: Any

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        self.server.local.seen.append(
            Seen(self.command, parts.path, dict(self.headers.items()), body)
        )
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = getattr(self, "route_" + parts.path.strip("/").replace("-", "_"), None)
        if route is None:
            self._send(404, b"not found", "text/plain")
            return
        route(query, body)

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def route_echo(self, query: dict[str, str], body: bytes) -> None:
        payload = {
            "method": self.command,
            "headers": dict(self.headers.items()),
            "body": body.decode("utf-8", "replace"),
        }
        self._send(200, json.dumps(payload).encode(), "application/json")

    def route_redirect(self, query: dict[str, str], body: bytes) -> None:
        self._send(int(query.get("status", "302")), b"", "text/plain", Location=query["to"])

    def route_loop(self, query: dict[str, str], body: bytes) -> None:
        self._send(302, b"", "text/plain", Location="/loop")

    def route_big(self, query: dict[str, str], body: bytes) -> None:
        self._send(200, BIG_BODY, "text/plain")

    def route_gzip_bomb(self, query: dict[str, str], body: bytes) -> None:
        self._send(200, GZIP_BOMB, "text/plain", Content_Encoding="gzip")

    def route_binary(self, query: dict[str, str], body: bytes) -> None:
        self._send(200, bytes(range(256)), "image/png")

    def route_endless(self, query: dict[str, str], body: bytes) -> None:
        # No Content-Length: the body runs until the client hangs up (or 100 MB).
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        chunk = b"y" * 65_536
        try:
            for _ in range(1_600):
                self.wfile.write(chunk)
        except OSError:
            return

    def route_slow(self, query: dict[str, str], body: bytes) -> None:
        time.sleep(float(query.get("s", "3")))
        try:
            self._send(200, b"late", "text/plain")
        except OSError:
            return


@pytest.fixture(scope="session")
def _local_server() -> Iterator[LocalServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True  # a slow handler must not hold up the end of the session
    local = LocalServer(port=httpd.server_address[1])
    httpd.local = local  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield local
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(_local_server: LocalServer) -> LocalServer:
    _local_server.seen.clear()
    return _local_server


@pytest.fixture
def loopback_allowed(settings: Any) -> None:
    """The on-prem escape hatch, opened just for 127.0.0.0/8 so the tests reach the server."""
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def no_private_networks(settings: Any) -> None:
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = []


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record (and fail) any attempt to open an outgoing TCP connection."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        raise AssertionError(f"a socket was opened to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts
