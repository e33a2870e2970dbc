"""Throttling per API token, counted in Django's cache (Redis in the distributed mode, so
every daphne process and worker counts the same requests)."""

from __future__ import annotations

from typing import Any

import structlog
from rest_framework.throttling import SimpleRateThrottle

log = structlog.get_logger(__name__)


class TokenRateThrottle(SimpleRateThrottle):
    """``API_THROTTLE_RATE`` per bearer token; per user for sessions, per address for
    anonymous callers. A throttled request is a 429 with ``Retry-After`` (DRF's
    ``Throttled``, put in the error shape by ``core.handlers``)."""

    scope = "token"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        token_key = getattr(request.auth, "token_key", None)
        if token_key:
            ident = f"t:{token_key}"
        elif request.user and request.user.is_authenticated:
            ident = f"u:{request.user.pk}"
        else:
            ident = f"a:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache being down must not fail requests
            # A limiter that cannot count lets requests through: an outage of the cache
            # should not become an outage of the API.
            log.warning("throttle_cache_unavailable", error=type(exc).__name__)
            return True


class RunCreateRateThrottle(TokenRateThrottle):
    """``API_RUN_CREATE_RATE`` run creations per bearer token (per user for sessions), on
    top of the general rate: a script looping over the create endpoint is slowed down long
    before it fills the queue. A batch is one creation here; the run quota counts its runs."""

    scope = "run_create"
