"""A webhook receiver on 127.0.0.1 for the tests: it records what it was sent and answers as
told (fail the first N attempts, never answer, or accept)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.fakes.quiet_http import QuietHandler


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    hang_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request whose signature verifies, de-duplicated by webhook-id, as a
        receiver following the specification would keep them."""
        seen: dict[str, dict[str, Any]] = {}
        for request in self.requests:
            try:
                payload = Webhook(secret).verify(request.body, request.headers)
            except WebhookVerificationError:
                continue
            seen.setdefault(request.headers["webhook-id"], payload)
        return list(seen.values())

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


@contextmanager
def running_receiver(**behaviour: Any) -> Iterator[Receiver]:
    receiver: Receiver | None = None

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            assert receiver is not None
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                receiver.requests.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                )
                attempt = len(receiver.requests)
            if receiver.hang_s:
                time.sleep(receiver.hang_s)
            status = 500 if attempt <= receiver.fail_first else 200
            reply = b'{"ok": false}' if status == 500 else b'{"ok": true}'
            self.send_response(status)
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook", **behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
