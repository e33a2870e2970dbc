"""What every tool shares: argument validation, a time limit, output truncation, and the
bridge to pydantic-ai's ``Tool``. The SSRF-safe HTTP client is ``core.safe_http``."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_ai import Tool, ToolFailed

from agents.tools.registry import ToolContext, ToolError, ToolSpec
from core.safe_http import OutboundError


def validation_message(exc: ValidationError) -> str:
    """A compact, model-readable account of what was wrong with the arguments."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "Invalid arguments: " + "; ".join(parts)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [truncated {len(text) - limit} characters]"


def render_output(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


async def call_tool(
    spec: ToolSpec, raw_args: dict[str, Any], ctx: ToolContext | None = None
) -> str:
    """Validate, run under the tool's time limit, truncate. Failures raise ``ToolFailed``
    so pydantic-ai hands them to the model as an error result and the run goes on."""
    try:
        args = spec.args_model.model_validate(raw_args)
    except ValidationError as exc:
        raise ToolFailed(validation_message(exc)) from None
    call = spec.run(args, ctx or ToolContext()) if spec.takes_context else spec.run(args)
    try:
        result = await asyncio.wait_for(call, timeout=spec.timeout_s)
    except TimeoutError:
        raise ToolFailed(f"{spec.name} timed out after {spec.timeout_s:g} s.") from None
    except (ToolError, OutboundError) as exc:  # the outbound client's refusals too
        raise ToolFailed(str(exc)) from None
    return truncate(render_output(result), spec.max_output_chars)


def to_pydantic_ai(
    spec: ToolSpec,
    ctx: ToolContext | None = None,
    *,
    after: Callable[[str, str], Awaitable[str]] | None = None,
) -> Tool[Any]:
    """Expose a registered tool to pydantic-ai with the argument model's JSON schema.

    Validation is ours (``call_tool``) so that a bad argument becomes an error result the
    model can act on, with the same wording for every tool. ``ctx`` is bound here, per run,
    so nothing in it passes through the model.
    """

    async def invoke(**kwargs: Any) -> str:
        output = await call_tool(spec, kwargs, ctx)
        # ``after`` (the run's moderation) sees the output before the model does.
        return await after(spec.name, output) if after is not None else output

    return Tool.from_schema(
        invoke,
        name=spec.name,
        description=spec.description,
        json_schema=copy.deepcopy(args_schema(spec.args_model)),
    )


@functools.cache
def args_schema(args_model: type[BaseModel]) -> dict[str, Any]:
    """The argument model's JSON schema, generated once per process: pydantic builds it
    afresh on every call, and tools are bound once per run (~0.5 ms each)."""
    return args_model.model_json_schema()
