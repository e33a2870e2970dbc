"""The tool registry and the built-in tools. Importing this package registers them."""

from __future__ import annotations

from agents.tools import calculator, current_time, http_request  # noqa: F401  (registration)
from agents.tools.registry import (
    ToolContext,
    ToolError,
    ToolSpec,
    all_tools,
    get_tool,
    register,
    tool_config,
)

__all__ = [
    "ToolContext",
    "ToolError",
    "ToolSpec",
    "all_tools",
    "get_tool",
    "register",
    "tool_config",
]
