"""Pytest fixtures for the fake LLM provider (import them; they are not registered globally)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.provider_server import FakeProviderServer


@pytest.fixture
def fake_provider() -> Iterator[FakeProviderServer]:
    """A running fake OpenAI/Anthropic server, fresh per test so scripts never leak."""
    server = FakeProviderServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
