"""How the runtime reaches the database from async code.

asgiref's default (``thread_sensitive=True``) sends every ORM call of the process through
one thread, so twenty concurrent runs would wait on each other's database round trips.
The runtime's database steps are self-contained (each opens and closes its own
transaction), so they may run on any thread of the pool; each hands its connection back
to the connection pool when it is done, as a request does at its end.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")


def in_db_thread(
    func: Callable[P, R], executor: ThreadPoolExecutor | None = None
) -> Callable[P, Awaitable[R]]:
    """``func`` as a coroutine running on the shared thread pool (or on ``executor``, for
    work that must not queue behind everyone else's, like the event writer's)."""

    @functools.wraps(func)
    def step(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        finally:
            connection.close()  # back to the pool (or closed, without one)

    return sync_to_async(step, thread_sensitive=False, executor=executor)
