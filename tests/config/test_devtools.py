"""The contributor's tools in the repository: VS Code files that parse and cover what
docs/development.md promises, snippets that expand to valid Python, and `make help`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / ".vscode"


def jsonc(path: Path) -> Any:
    """VS Code's JSON with comments (whole-line ``//`` comments, as ours use)."""
    return json.loads(re.sub(r"^\s*//.*$", "", path.read_text(), flags=re.MULTILINE))


def expand(body: list[str]) -> str:
    """A snippet's text with every placeholder at its default, as Tab-through leaves it."""
    text = "\n".join(body)
    placeholder = re.compile(r"\$\{\d+:([^${}]*)\}")
    while placeholder.search(text):
        text = placeholder.sub(r"\1", text)
    return re.sub(r"\$\d+", "", text)


def test_the_launch_configurations_debug_daphne_the_worker_run_agent_and_one_test() -> None:
    configurations = jsonc(VSCODE / "launch.json")["configurations"]
    targets = {c.get("module") or Path(c.get("program", "")).name for c in configurations}
    assert {"daphne", "celery", "manage.py", "pytest"} <= targets
    run_agent = next(c for c in configurations if c["name"] == "run_agent")
    assert run_agent["args"][0] == "run_agent"
    one_test = next(c for c in configurations if c["name"] == "pytest: current test")
    assert "${file}::${selectedText}" in one_test["args"]


def test_every_snippet_expands_to_valid_python() -> None:
    snippets = jsonc(VSCODE / "switchyard.code-snippets")
    prefixes = {s["prefix"] for s in snippets.values()}
    assert prefixes == {
        "sy-service",
        "sy-selector",
        "sy-tool",
        "sy-task",
        "sy-test",
        "sy-admin-action",
    }
    for name, snippet in snippets.items():
        source = expand(snippet["body"])
        compile(source, name, "exec")  # raises SyntaxError naming the snippet


def test_the_tool_snippet_registers_a_working_tool() -> None:
    import asyncio

    from agents.tools import registry
    from agents.tools.utils import call_tool

    snippets = jsonc(VSCODE / "switchyard.code-snippets")
    source = expand(snippets["Tool with its argument model"]["body"]).replace(
        'name="name"', 'name="snippet_probe"'
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "sy-tool", "exec"), namespace)
    try:
        spec = registry.get_tool("snippet_probe")
        assert asyncio.run(call_tool(spec, {"query": "ping"})) == "ping"
    finally:
        registry._REGISTRY.pop("snippet_probe", None)


def test_the_recommended_extensions_include_python_ruff_and_mypy() -> None:
    recommended = set(jsonc(VSCODE / "extensions.json")["recommendations"])
    assert {"ms-python.python", "charliermarsh.ruff", "ms-python.mypy-type-checker"} <= recommended


def test_make_help_lists_every_target_with_one_line() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"dev", "check", "logs", "help"} <= listed
    assert targets == listed, (targets, listed)
