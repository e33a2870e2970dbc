"""What every tool shares: argument validation, a time limit, output truncation, and the
bridge to pydantic-ai's ``Tool``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError
from pydantic_ai import Tool, ToolFailed

from agents.tools.registry import ToolError, ToolSpec


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


async def call_tool(spec: ToolSpec, raw_args: dict[str, Any]) -> str:
    """Validate, run under the tool's time limit, truncate. Failures raise ``ToolFailed``
    so pydantic-ai hands them to the model as an error result and the run goes on."""
    try:
        args = spec.args_model.model_validate(raw_args)
    except ValidationError as exc:
        raise ToolFailed(validation_message(exc)) from None
    try:
        result = await asyncio.wait_for(spec.run(args), timeout=spec.timeout_s)
    except TimeoutError:
        raise ToolFailed(f"{spec.name} timed out after {spec.timeout_s:g} s.") from None
    except ToolError as exc:
        raise ToolFailed(str(exc)) from None
    return truncate(render_output(result), spec.max_output_chars)


def to_pydantic_ai(spec: ToolSpec) -> Tool[Any]:
    """Expose a registered tool to pydantic-ai with the argument model's JSON schema.

    Validation is ours (``call_tool``) so that a bad argument becomes an error result the
    model can act on, with the same wording for every tool.
    """

    async def invoke(**kwargs: Any) -> str:
        return await call_tool(spec, kwargs)

    return Tool.from_schema(
        invoke,
        name=spec.name,
        description=spec.description,
        json_schema=spec.args_model.model_json_schema(),
    )
