"""The tool registry and the built-in tools. Importing this package registers them."""

from __future__ import annotations

from agents.tools import (  # noqa: F401  (registration)
    calculator,
    current_time,
    delegate,
    http_request,
)
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
