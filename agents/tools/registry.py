"""One registry of tools. A tool is a small module that builds a ``ToolSpec`` and registers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


class ToolError(Exception):
    """A failure the model should see as the tool's result (bad input, upstream error)."""


SecretReader = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the run that calls it. Built by the runtime per run and
    tool; never shown to the model.

    ``tool_config`` is ``Run.config["tool_config"][tool_name]`` (operator-set, per agent).
    ``secret`` reveals a vault secret by name at the point of use, so plaintext lives only
    inside the tool call that needs it; None when the run has no vault access.
    """

    run_id: str | None = None
    agent: str | None = None  # the agent's slug
    tool_config: Mapping[str, Any] = field(default_factory=dict)
    secret: SecretReader | None = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args_model: type[BaseModel]
    # Receives the validated args model, plus a ToolContext when ``takes_context`` is set.
    run: Callable[..., Awaitable[Any]]
    timeout_s: float = 10.0
    max_output_chars: int = 8_000
    # Explicit rather than sniffed from the signature: a context-free tool stays
    # ``run(args)``, and a tool that needs per-run state says so where it is declared.
    takes_context: bool = False


_REGISTRY: dict[str, ToolSpec] = {}


def register(spec: ToolSpec) -> ToolSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"A tool named {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def get_tool(name: str) -> ToolSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"Unknown tool {name!r}.") from None


def all_tools() -> dict[str, ToolSpec]:
    return dict(_REGISTRY)


def tool_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The operator's settings for one tool in a run's frozen config (empty when unset)."""
    section = config.get("tool_config") or {}
    value = section.get(name) or {}
    return dict(value) if isinstance(value, Mapping) else {}
