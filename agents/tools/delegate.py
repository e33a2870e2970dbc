"""delegate: an agent as a tool. Runs another agent as a child run of the calling run.

Per-agent configuration in ``Run.config["tool_config"]["delegate"]``::

    {"agents": ["researcher", "summariser"]}   # the agents this one may delegate to

The child run is linked to its parent (``Run.parent``), streams on its own run stream,
and its usage and cost are rolled up into the parent's totals when the parent ends.
Delegation is depth-limited (``MAX_DELEGATION_DEPTH``) so agents cannot recurse without end.
A cancelled parent cancels the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from pydantic import BaseModel, Field

from agents.tools.registry import ToolContext, ToolError, ToolSpec, register

MAX_DELEGATION_DEPTH = 3
CHILD_CANCEL_GRACE_S = 5.0


class DelegateArgs(BaseModel):
    agent: str = Field(max_length=63, description="The slug of the agent to hand the task to.")
    input: str = Field(min_length=1, max_length=16_000, description="The task for that agent.")


def _create_child(parent_id: str, slug: str, text: str, allowed: list[str]) -> uuid.UUID:
    from agents.models import Agent, Run
    from agents.services import run_create
    from core.errors import ApplicationError

    if slug not in allowed:
        raise ToolError(f"Delegating to {slug!r} is not allowed; allowed: {', '.join(allowed)}.")
    parent = Run.objects.select_related("owner").get(pk=parent_id)
    if parent.depth + 1 > MAX_DELEGATION_DEPTH:
        raise ToolError(f"Delegation is limited to a depth of {MAX_DELEGATION_DEPTH}.")
    agent = Agent.objects.select_related("provider").filter(slug=slug).first()
    if agent is None:
        raise ToolError(f"No agent {slug!r}.")
    try:
        child, _ = run_create(
            agent=agent, owner=parent.owner, input=text, parent=parent, enqueue=False
        )
    except ApplicationError as exc:
        raise ToolError(exc.message) from None
    return child.id


def _child_result(child_id: uuid.UUID) -> dict[str, Any]:
    from agents.models import Run

    child = Run.objects.get(pk=child_id)
    if child.status != "succeeded":
        raise ToolError(
            f"The delegated run {child.id} ended '{child.status}'"
            + (f": {child.error_code}" if child.error_code else ".")
        )
    return {"run": str(child.id), "output": child.output}


def _cancel_child(child_id: uuid.UUID) -> None:
    from agents.services import run_cancel

    with contextlib.suppress(Exception):
        run_cancel(run_id=child_id)


async def _run(args: DelegateArgs, ctx: ToolContext) -> dict[str, Any]:
    from agents.runtime import execute_run

    if ctx.run_id is None:
        raise ToolError("delegate can only be used inside a run.")
    allowed = list(ctx.tool_config.get("agents", []))
    child_id = await sync_to_async(_create_child)(ctx.run_id, args.agent, args.input, allowed)
    task = asyncio.ensure_future(execute_run(child_id))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # The parent is being cancelled (or timed out): cancel the child the normal way and
        # give its executor a moment to confirm, so it ends cancelled rather than stranded.
        await sync_to_async(_cancel_child)(child_id)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, CHILD_CANCEL_GRACE_S)
        raise
    return await sync_to_async(_child_result)(child_id)


delegate = register(
    ToolSpec(
        name="delegate",
        description="Hand a task to another agent and return its answer.",
        args_model=DelegateArgs,
        run=_run,
        takes_context=True,
        timeout_s=600.0,
        max_output_chars=16_000,
    )
)
