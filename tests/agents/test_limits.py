"""Per-run limits only ever lower the agent's (issue 11, finding 1).

A run asked for ``timeout_s: 0.5`` on an agent with 3 s; the fraction became 0 and
``0 or RUN_TIMEOUT_S`` gave it 600 s. Now every limit is validated where it enters (the
API's serializer, then the service for every other caller), and the engine never tests a
limit for truth.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from agents.runtime.engine import effective_timeout_s
from agents.services import LIMIT_FIELDS, merge_limits
from core.errors import ApplicationError

RUNS = "/api/v1/agents/demo-assistant/runs/"
CEILING: dict[str, Any] = {
    "max_requests": 20,
    "max_tool_calls": 20,
    "max_input_tokens": 1000,
    "max_output_tokens": None,
    "max_cost_usd": "0.50",
    "timeout_s": 3,
}


@pytest.fixture
def _no_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agents.runtime.executors.enqueue_run", lambda run_id: None)


@pytest.mark.django_db
@pytest.mark.usefixtures("_no_executor")
@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"timeout_s": 0.5}, "timeout_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"timeout_s": "5"}, "timeout_s"),
        ({"timeout_s": True}, "timeout_s"),
        ({"max_requests": 2.5}, "max_requests"),
        ({"max_cost_usd": "NaN"}, "max_cost_usd"),
        ({"max_cost_usd": "Infinity"}, "max_cost_usd"),
        ({"max_cost_usd": "-0.1"}, "max_cost_usd"),
        ({"max_cost_usd": 0}, "max_cost_usd"),
    ],
)
def test_a_limit_that_is_not_a_positive_number_of_its_kind_is_a_400_naming_it(
    alice_api: APIClient, demo_agent: Any, limits: dict[str, Any], name: str
) -> None:
    response = alice_api.post(RUNS, {"input": "x", "limits": limits}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert list(error["details"]["limits"]) == [name]


@pytest.mark.django_db
@pytest.mark.usefixtures("_no_executor")
def test_a_limit_above_the_agents_is_a_400_and_a_lower_one_is_kept(
    alice_api: APIClient, demo_agent: Any
) -> None:
    # given the demo agent's 300 s timeout
    too_high = alice_api.post(RUNS, {"input": "x", "limits": {"timeout_s": 301}}, format="json")
    lower = alice_api.post(
        RUNS, {"input": "x", "limits": {"timeout_s": 2, "max_cost_usd": "0.25"}}, format="json"
    )
    assert too_high.status_code == 400
    assert too_high.json()["error"]["details"] == {"limit": "timeout_s"}
    assert lower.status_code == 201
    assert lower.json()["limits"]["timeout_s"] == 2


def test_nan_infinity_and_fractions_never_reach_the_engine_through_the_service() -> None:
    for value in (0.5, math.nan, math.inf, "nan", "1e999999", Decimal("NaN"), None, [], {}):
        with pytest.raises(ApplicationError) as caught:
            merge_limits(CEILING, {"timeout_s": value})
        assert caught.value.details == {"limit": "timeout_s"}
    for value in ("NaN", "-Infinity", math.nan, True, None, "abc"):
        with pytest.raises(ApplicationError):
            merge_limits(CEILING, {"max_cost_usd": value})


def test_the_engine_treats_only_a_missing_timeout_as_unset(settings: Any) -> None:
    settings.RUN_TIMEOUT_S = 600
    assert effective_timeout_s({"timeout_s": 3}) == 3
    assert effective_timeout_s({}) == 600
    assert effective_timeout_s({"timeout_s": 86_400}) == 600  # the global cap still holds


values = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    requested=st.dictionaries(st.sampled_from(LIMIT_FIELDS), values, max_size=len(LIMIT_FIELDS)),
    timeout_cap=st.integers(min_value=1, max_value=86_400),
)
def test_property_the_effective_limit_is_never_above_the_agents(
    requested: dict[str, Any], timeout_cap: int
) -> None:
    ceiling = {**CEILING, "timeout_s": timeout_cap}
    try:
        merged = merge_limits(ceiling, requested)
    except ApplicationError as exc:
        assert exc.code == "invalid_limits"
        assert exc.details["limit"] in requested
        return
    for name in LIMIT_FIELDS:
        cap, value = ceiling[name], merged[name]
        if name in requested:
            assert Decimal(str(value)) > 0
        if cap is not None:
            assert Decimal(str(value)) <= Decimal(str(cap))
    assert 0 < effective_timeout_s(merged) <= timeout_cap
