"""Throttling per API token, counted in Django's cache (Redis in the distributed mode, so
every daphne process and worker counts the same requests)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import structlog
from django.core.cache.backends.redis import RedisCache
from django.utils.connection import ConnectionProxy
from rest_framework.throttling import SimpleRateThrottle

log = structlog.get_logger(__name__)


class TokenRateThrottle(SimpleRateThrottle):
    """``API_THROTTLE_RATE`` per bearer token; per user for sessions, per address for
    anonymous callers. A throttled request is a 429 with ``Retry-After`` (DRF's
    ``Throttled``, put in the error shape by ``core.handlers``).

    Counted as a sliding window of two fixed windows (the previous window's count
    weighted by how much of it still overlaps the last ``duration`` seconds, plus the
    current one's): one counter per window, incremented atomically. DRF's own throttle
    keeps a list of every request's time and reads and rewrites all of it on each
    request, which at 6,000/min was a 50 kB read-modify-write (and lost counts between
    concurrent requests). A refused request is taken back out, as DRF does not count it.
    """

    scope = "token"
    # Set by SimpleRateThrottle.__init__ from the rate (the stubs do not declare them).
    num_requests: int
    duration: int

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
        self._wait: float | None = None
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            counted_key, elapsed, current, previous = self._count(key)
        except Exception as exc:  # noqa: BLE001 - the cache being down must not fail requests
            # A limiter that cannot count lets requests through: an outage of the cache
            # should not become an outage of the API.
            log.warning("throttle_cache_unavailable", error=type(exc).__name__)
            return True
        if previous * (1 - elapsed) + current <= self.num_requests:
            return True
        with contextlib.suppress(Exception):  # a count one too high is harmless
            self._uncount(counted_key)
        self._wait = self._seconds_until_allowed(elapsed, current - 1, previous)
        return False

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)

    def _count(self, key: str) -> tuple[str, float, int, int]:
        """Count this request: (the counter it went to, the fraction of the current window
        gone, the current and the previous window's counts)."""
        now = self.timer()
        window, into = divmod(now, self.duration)
        current_key, previous_key = f"{key}:{int(window)}", f"{key}:{int(window) - 1}"
        # Both windows' counters must outlive the next window, which still weighs them.
        ttl = 2 * self.duration + 1
        backend = self._backend()
        if isinstance(backend, RedisCache):
            # One round trip: INCR, EXPIRE and GET in a pipeline.
            names = [backend.make_and_validate_key(k) for k in (current_key, previous_key)]
            client = backend._cache.get_client(names[0], write=True)
            pipe = client.pipeline(transaction=False)
            pipe.incr(names[0])
            pipe.expire(names[0], ttl)
            pipe.get(names[1])
            current, _, previous_raw = pipe.execute()
            previous = int(previous_raw or 0)
        else:
            backend.add(current_key, 0, ttl)
            current = backend.incr(current_key)
            previous = int(backend.get(previous_key, 0))
        return current_key, into / self.duration, int(current), previous

    def _uncount(self, counted_key: str) -> None:
        backend = self._backend()
        if isinstance(backend, RedisCache):
            name = backend.make_and_validate_key(counted_key)
            backend._cache.get_client(name, write=True).decr(name)
        else:
            backend.decr(counted_key)

    def _backend(self) -> Any:
        """The cache itself: ``self.cache`` is Django's proxy of the default cache."""
        cache = self.cache
        if isinstance(cache, ConnectionProxy):
            return cache._connections[cache._alias]
        return cache

    def _seconds_until_allowed(self, elapsed: float, counted: int, previous: int) -> float:
        """When a retry (which counts one more) fits, if nothing else comes meanwhile;
        ``counted`` is the current window's count without the refused request."""
        limit = self.num_requests
        if counted + 1 <= limit and previous:
            # Later in this window, once the previous one's weight has faded enough.
            fraction = 1 - (limit - counted - 1) / previous
            return max(1.0, math.ceil((fraction - elapsed) * self.duration))
        # In the next window, once this one's weight has faded enough; never more than a
        # window: by then every request counted is older than the rate's period, which
        # is what a sliding log (DRF's) would answer.
        fraction = 1 - (limit - 1) / counted if counted else 0.0
        wait = math.ceil((1 - elapsed + fraction) * self.duration)
        return float(max(1, min(wait, self.duration)))

    def timer(self) -> float:
        return time.time()


class RunCreateRateThrottle(TokenRateThrottle):
    """``API_RUN_CREATE_RATE`` run creations per bearer token (per user for sessions), on
    top of the general rate: a script looping over the create endpoint is slowed down long
    before it fills the queue. A batch is one creation here; the run quota counts its runs."""

    scope = "run_create"
