"""Model clients for a run's provider, built from the run's frozen configuration."""

from __future__ import annotations

from typing import Any

from pydantic_ai.models import Model

from agents.models import ProviderKind
from agents.runtime.demo import demo_model


class ProviderConfigError(Exception):
    """The run's provider cannot be used as configured."""


def build_model(config: dict[str, Any]) -> Model:
    provider = config["provider"]
    kind = provider["kind"]
    if kind == ProviderKind.DEMO:
        return demo_model(config["model_name"])
    raise ProviderConfigError(f"Provider kind {kind!r} is not available.")
