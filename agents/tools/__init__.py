"""The tool registry and the built-in tools. Importing this package registers them."""

from __future__ import annotations

from agents.tools import calculator, current_time  # noqa: F401  (registration)
from agents.tools.registry import ToolSpec, all_tools, get_tool, register

__all__ = ["ToolSpec", "all_tools", "get_tool", "register"]
