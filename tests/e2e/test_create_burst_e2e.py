"""1,000 concurrent run creations against a real daphne and worker, as ``make run`` starts
them: each is a 201, or a deliberate 429/503 with Retry-After; never a 500 or a reset
connection; every 201 run exists exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack, private_distributed_stack

pytestmark = pytest.mark.e2e

BURST = 1000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    # make run's settings: the default pool, admission limit, quota and rates.
    with private_distributed_stack(tmp_path_factory.mktemp("burst"), redis_url) as stack:
        yield stack


async def burst(stack: Stack, count: int) -> list[Any]:
    """``count`` POSTs at once, each on a connection of its own, as many clients would."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def one(i: int) -> Any:
            try:
                return await client.post(
                    "/api/v1/agents/demo-assistant/runs/", json={"input": f"burst {i}"}
                )
            except httpx.HTTPError as exc:  # a reset or refused connection, a timeout
                return exc

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_a_thousand_concurrent_creates_are_answered_and_never_fail(stack: Stack) -> None:
    # When 1,000 clients create a run at the same moment
    began = time.monotonic()
    answers = asyncio.run(burst(stack, BURST))
    wall = time.monotonic() - began
    kinds = Counter(
        str(a.status_code) if isinstance(a, httpx.Response) else type(a).__name__ for a in answers
    )
    print(f"{BURST} concurrent creates in {wall:.1f} s: {dict(kinds)}")  # the figures
    # Then each was created, or shed on purpose with a Retry-After: no error, no reset
    assert set(kinds) <= {"201", "429", "503"}, kinds
    for answer in answers:
        if answer.status_code != 201:
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["error"]["code"] in {"throttled", "too_many_runs", "server_busy"}
    # And every run answered 201 exists exactly once, and no other was created
    created = [a.json()["id"] for a in answers if a.status_code == 201]
    assert len(set(created)) == len(created) == kinds["201"]
    assert kinds["201"] >= BURST // 2, kinds  # shedding is for overload, not the rule
    with stack.client() as client:
        stored: list[str] = []
        url: str | None = "/api/v1/runs/?limit=500"
        while url:
            page = client.get(url, timeout=30).json()
            stored += [r["id"] for r in page["results"] if r["input"].startswith("burst ")]
            url = page["next"]
    assert sorted(stored) == sorted(created)
