"""A server going away tells its stream clients so (close 4503), and they can resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import base_env, boot

pytestmark = pytest.mark.e2e


def test_a_shutting_down_server_closes_streams_with_going_away(tmp_path: Path) -> None:
    stack = boot(base_env(tmp_path), tmp_path, celery=False)
    try:
        with stack.client() as client:
            words = " ".join(f"w{i}" for i in range(300))  # ~6 s of streaming
            run = client.post("/api/v1/agents/demo-assistant/runs/", json={"input": words})
        run_id = run.json()["id"]
        daphne = stack.procs[0]

        async def watch() -> tuple[int | None, int]:
            url = f"{stack.ws_url}/ws/runs/{run_id}/"
            headers = {"Authorization": f"Bearer {stack.token}"}
            seen = 0
            async with asyncio.timeout(20), connect(url, additional_headers=headers) as ws:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        if "seq" in json.loads(raw):
                            seen += 1
                        if seen == 5:
                            os.killpg(daphne.pid, signal.SIGTERM)
                return ws.close_code, seen

        code, seen = asyncio.run(watch())
        assert seen >= 5
        assert code == 4503
        daphne.wait(timeout=10)  # and the server still stops, promptly
    finally:
        stack.stop()
