"""The import rules of docs/architecture.md, checked on the source: imports point down."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("config", "core", "secrets_vault", "moderation", "agents", "webhooks", "openai_api")
APPS_AND_TOP = (*APPS, "console", "monitoring")

# What each package may import besides itself and third-party code (architecture.md).
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "core": (),
    "secrets_vault": ("core",),
    "moderation": ("core",),
    "agents": ("core", "secrets_vault", "moderation", "monitoring.metrics"),
    "webhooks": ("core", "agents", "secrets_vault", "moderation"),
    "openai_api": ("core", "agents", "monitoring.metrics"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import, ``from a import b`` as ``a.b``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _sources(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    return any(name == a or name.startswith(f"{a}.") for a in allowed)


def test_every_app_imports_only_the_packages_below_it() -> None:
    # given the packages each app may import
    violations = []
    for package, allowed in MAY_IMPORT.items():
        for path in _sources(package):
            # when its imports are read
            for line, name in _imports(path):
                top = name.split(".")[0]
                if top in APPS_AND_TOP and top != package and not _allowed(name, allowed):
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    # then none reaches up or sideways
    assert violations == []


def test_no_app_imports_another_apps_errors_or_serializers() -> None:
    # given every package (core's errors and serializers are the shared ones)
    violations = []
    for package in APPS_AND_TOP:
        for path in _sources(package):
            for line, name in _imports(path):
                parts = name.split(".")
                # when one names another app's errors or serializers module
                if (
                    len(parts) > 1
                    and parts[0] in APPS_AND_TOP
                    and parts[0] not in (package, "core")
                    and parts[1] in ("errors", "serializers")
                ):
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    # then there is none
    assert violations == []
