"""Throttling per token, counted in the shared cache (Redis when REDIS_URL is set)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

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
