"""Throttling per token, counted in the shared cache (Redis when REDIS_URL is set)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

from core.throttles import TokenRateThrottle
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "2/min"})
    cache.clear()


def test_the_third_request_of_a_token_in_a_minute_is_a_429_with_retry_after(
    two_per_minute: None, alice: Any
) -> None:
    client = token_client(alice)
    assert [client.get("/api/v1/usage/").status_code for _ in range(2)] == [200, 200]
    response = client.get("/api/v1/usage/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "throttled"


def test_each_token_has_its_own_count(two_per_minute: None, alice: Any) -> None:
    first, second = token_client(alice), token_client(alice)
    for _ in range(2):
        first.get("/api/v1/usage/")
    assert first.get("/api/v1/usage/").status_code == 429
    assert second.get("/api/v1/usage/").status_code == 200


def test_the_counts_live_in_redis_where_every_process_reads_them(
    two_per_minute: None, alice: Any, redis_url: str
) -> None:
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    token_client(alice).get("/api/v1/usage/")
    keys = redis.Redis.from_url(redis_url).keys("*throttle_token_t:*")
    assert len(keys) == 1


def test_a_cache_outage_lets_requests_through(
    two_per_minute: None, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(TokenRateThrottle, "cache", type("Down", (), {"get": down})())
    client = token_client(alice)
    assert [client.get("/api/v1/usage/").status_code for _ in range(3)] == [200, 200, 200]


class Clocked(TokenRateThrottle):
    """The throttle on a clock the test sets."""

    now = 1_000_040.0  # 20 s into a minute window

    def timer(self) -> float:
        return self.now


def hits(throttle: TokenRateThrottle, count: int) -> list[bool]:
    request = SimpleNamespace(auth=SimpleNamespace(token_key="abc"), user=None)
    return [throttle.allow_request(request, None) for _ in range(count)]


@pytest.fixture(params=["redis", "locmem"])
def clocked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[Clocked]:
    """The sliding window over both backends: Redis (one pipelined round trip) and the
    embedded mode's local memory."""
    monkeypatch.setattr(Clocked, "THROTTLE_RATES", {"token": "10/min"})
    monkeypatch.setattr(Clocked, "now", 1_000_040.0)
    if request.param == "locmem":
        local = LocMemCache("throttle-test", {})
        local.clear()  # instances of one name share their memory
        monkeypatch.setattr(Clocked, "cache", local)
    else:
        request.getfixturevalue("redis_url")
    cache.clear()
    return Clocked


def test_the_window_slides_and_refused_requests_do_not_count(clocked: type[Clocked]) -> None:
    throttle = clocked()
    assert hits(throttle, 11) == [True] * 10 + [False]
    # the rest of this window (40 s), then until the old 10 weigh 9 or less (6 s)
    assert 46 <= throttle.wait() <= 47
    assert hits(clocked(), 5) == [False] * 5  # refused, and not counted either
    # 30 s into the next window the previous one weighs half: 5 of its 10 remain
    clocked.now = 1_000_040.0 + 70
    assert hits(clocked(), 6) == [True] * 5 + [False]


def test_a_token_over_the_rate_waits_for_the_old_requests_to_fade(
    clocked: type[Clocked],
) -> None:
    hits(clocked(), 10)
    clocked.now += 60  # the next window, 20 s in: the previous 10 weigh 2/3
    throttle = clocked()
    assert hits(throttle, 4) == [True, True, True, False]
    # a 4th fits once the old weight is 6: at 24 s, 4 s from now
    assert 4 <= throttle.wait() <= 5
