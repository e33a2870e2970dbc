"""A stdlib HTTP request handler that does not write an access line per request."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (stdlib name)
        """Keep test output quiet: the stdlib logs every request to stderr."""
