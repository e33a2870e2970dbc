from __future__ import annotations

import itertools

import pytest

from agents.lifecycle import ALLOWED, TERMINAL, RunStatus, can_transition, is_terminal, sources_of

EDGES = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("queued", "failed"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "timed_out"),
    ("running", "blocked"),
    ("running", "cancelling"),
    ("running", "queued"),
    ("cancelling", "cancelled"),
}
ALL_PAIRS = set(itertools.product(RunStatus.values, RunStatus.values))


@pytest.mark.parametrize("source,target", sorted(EDGES))
def test_it_allows_every_edge_of_the_status_machine(source: str, target: str) -> None:
    assert can_transition(source, target)
    assert source in sources_of(target)


@pytest.mark.parametrize("source,target", sorted(ALL_PAIRS - EDGES))
def test_it_refuses_every_other_transition(source: str, target: str) -> None:
    assert not can_transition(source, target)
    assert source not in sources_of(target)


def test_terminal_states_have_no_way_out() -> None:
    for status in TERMINAL:
        assert is_terminal(status)
        assert ALLOWED[status] == frozenset()
    assert not is_terminal("running")
