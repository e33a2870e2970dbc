"""One registry of tools. A tool is a small module that builds a ``ToolSpec`` and registers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


class ToolError(Exception):
    """A failure the model should see as the tool's result (bad input, upstream error)."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args_model: type[BaseModel]
    run: Callable[[Any], Awaitable[Any]]  # receives the validated args model
    timeout_s: float = 10.0
    max_output_chars: int = 8_000
    secret: str | None = None  # name of a vault secret the tool needs, if any
    tags: tuple[str, ...] = field(default_factory=tuple)


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
