"""The runtime: one async code path (``execute_run``) for every executor."""

from __future__ import annotations

from typing import Any


async def execute_run(run_id: Any) -> str | None:
    """See ``agents.runtime.engine.execute_run``; imported lazily so Django loads first."""
    from agents.runtime.engine import execute_run as _execute_run

    return await _execute_run(run_id)


__all__ = ["execute_run"]
