"""A Celery worker app with a *null runtime*, for ``bench_floor``'s end-to-end ceiling.

It consumes the platform's own ``agents.execute_run`` tasks (queued by the real API) but
does the least a run can do: the bare pydantic-ai agent on a long-lived event loop, then
one SQL statement that marks the run succeeded and stores its ``run.started`` and
``run.succeeded`` events (the benchmark's client reads those). No claim, no event stream,
no Redis publish, no ledger, no moderation, no heartbeat, no metrics, no log line.

What the real stack does beyond this is the runtime's bookkeeping; what this stack
cannot exceed is the ceiling of any runtime on this machine.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from celery import Celery  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from pydantic_ai import Agent  # noqa: E402

from agents.runtime.demo import demo_model  # noqa: E402
from agents.tools import get_tool  # noqa: E402
from agents.tools.utils import to_pydantic_ai  # noqa: E402

app = Celery("null-runtime")
app.config_from_object("django.conf:settings", namespace="CELERY")

_agent = Agent(
    demo_model("demo"),
    tools=[to_pydantic_ai(get_tool("calculator")), to_pydantic_ai(get_tool("current_time"))],
)
_loop = asyncio.new_event_loop()
threading.Thread(target=_loop.run_forever, name="null-runtime-loop", daemon=True).start()

# One statement, one transaction: the status and both events.
_FINISH = """
WITH run AS (
    UPDATE agents_run SET status = 'succeeded', output = %s, started_at = %s,
        finished_at = now(), attempt = attempt + 1
    WHERE id = %s AND status = 'queued' RETURNING id
)
INSERT INTO agents_runevent (run_id, seq, type, data, created_at)
SELECT run.id, e.seq, e.type, '{}'::jsonb, e.at
FROM run, (VALUES (2, 'run.started', %s::timestamptz),
                  (3, 'run.succeeded', now())) AS e (seq, type, at)
"""


async def _drain(ctx: Any, stream: Any) -> None:
    async for _event in stream:
        continue  # as bench_runs' bare agent: the demo model only streams


@app.task(name="agents.execute_run", acks_late=True)
def execute_run(run_id: str) -> None:
    started = timezone.now()
    result: Any = asyncio.run_coroutine_threadsafe(
        _agent.run("What is 12*7?", event_stream_handler=_drain), _loop
    ).result()
    try:
        with connection.cursor() as cursor:
            cursor.execute(_FINISH, [result.output, started, run_id, started])
    finally:
        connection.close()  # back to the pool, as the real runtime's steps do
