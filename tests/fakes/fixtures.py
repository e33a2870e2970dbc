"""Pytest fixtures for the fake LLM provider (import them; they are not registered globally)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fakes.provider_server import FakeProviderServer


@contextmanager
def running_fake_provider() -> Iterator[FakeProviderServer]:
    """A fake OpenAI/Anthropic server on 127.0.0.1 for the duration of the block."""
    server = FakeProviderServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_provider() -> Iterator[FakeProviderServer]:
    """A running fake OpenAI/Anthropic server, fresh per test so scripts never leak."""
    with running_fake_provider() as server:
        yield server
