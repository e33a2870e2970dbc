"""End to end in a real headless Chromium: the console's dashboard, rule editor and tables.

One booted stack (the embedded one) with the demo's example runs, Debian's ``chromium``
driven by Playwright's Python package, as in ``test_admin_live_view_e2e.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

WIDTH = 1280


@pytest.fixture(scope="module")
def console_stack(embedded_stack: Stack) -> Stack:
    """The stack with the demo's example runs (succeeded, redacted, flagged, blocked,
    cancelled, delegated), as a first start has them; the suite's stacks seed none."""
    embedded_stack.manage("seed_demo", "--examples", "--no-token")
    return embedded_stack


@pytest.fixture
def page(browser: Any, console_stack: Stack) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto(f"{console_stack.base_url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", console_stack.admin_password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{console_stack.base_url}/admin/")
    yield page
    page.close()


def money(value: Any) -> str:
    """As the page shows an amount (``floatformat:4`` rounds half up)."""
    return f"${Decimal(value).quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"


def usage_by_agent(stack: Stack, start: datetime, end: datetime) -> dict[str, Any]:
    query = {"from": start.isoformat(), "to": end.isoformat(), "group_by": "agent"}
    with stack.client() as client:
        response = client.get("/api/v1/usage/", params=query)
    assert response.status_code == 200, response.text
    return {row["agent"]: row for row in response.json()["results"]}


def dashboard_rows(page: Any) -> dict[str, list[str]]:
    return page.eval_on_selector_all(
        "#dash-agents tr[data-agent]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.agent,"
        " [...r.cells].map(c => c.textContent.trim())]))",
    )


def test_the_dashboard_shows_the_usage_apis_numbers_for_the_seeded_runs(
    page: Any, console_stack: Stack
) -> None:
    # Given the example runs, and the usage API's numbers for the last 24 hours
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=24), now + timedelta(minutes=1)
    api = usage_by_agent(console_stack, start, end)
    # When the operator opens the dashboard for 24 h
    page.goto(f"{console_stack.base_url}/admin/?window=24h")
    rows = dashboard_rows(page)
    if usage_by_agent(console_stack, start, end) != api:  # a run of another test ended
        api = usage_by_agent(console_stack, start, end)
    # Then each agent's runs, tokens and spend are the API's
    assert {"demo-assistant", "demo-coordinator"} <= set(rows)
    for slug, row in api.items():
        _, runs, _, tokens, spend = rows[slug]
        assert int(runs) == row["runs"]["total"]
        assert int(tokens) == row["input_tokens"] + row["output_tokens"]
        assert spend == money(row["cost_usd"])
    # And the totals add up to the API's, with real spend (the demo model has a price)
    total_runs = sum(r["runs"]["total"] for r in api.values())
    total_cost = sum(Decimal(r["cost_usd"]) for r in api.values())
    assert int(page.text_content("[data-stat=runs]")) == total_runs >= 5
    assert page.text_content("[data-stat=spend]").strip() == money(total_cost)
    assert total_cost > 0
    assert page.locator("[data-health]").get_attribute("data-health") == "ok"


def add_rule(page: Any, kind: str, name: str) -> str:
    """Add a rule to the policy form; returns its field prefix (rules-N)."""
    page.click("#rules-group .add-row")
    prefix = f"rules-{int(page.input_value('#id_rules-TOTAL_FORMS')) - 1}"
    page.select_option(f"select[name={prefix}-kind]", kind)
    page.fill(f"input[name={prefix}-name]", name)
    return prefix


def test_the_rule_editor_saves_a_keyword_rule_and_shows_the_engines_regex_error(
    page: Any, console_stack: Stack
) -> None:
    # Given a new policy with a keyword rule typed in its fields (no JSON)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    page.goto(f"{console_stack.base_url}/admin/moderation/policy/add/")
    page.fill("#id_name", name)
    prefix = add_rule(page, "keyword", "Competitors")
    # only the keyword fields show
    assert page.locator(f"textarea[name={prefix}-keyword_terms]").is_visible()
    assert page.locator(f"input[name={prefix}-regex_pattern]").is_hidden()
    page.fill(f"textarea[name={prefix}-keyword_terms]", "acme\nglobex")
    partners = add_rule(page, "keyword", "Partners")
    page.fill(f"textarea[name={partners}-keyword_terms]", "initech")
    # When it is saved
    page.click("button[name=_continue]")
    # Then the rules are stored in the order shown, with their terms
    page.wait_for_url("**/change/")
    assert page.input_value("textarea[name=rules-0-keyword_terms]") == "acme\nglobex"
    assert [page.input_value(f"input[name=rules-{i}-order]") for i in (0, 1)] == ["0", "1"]
    # When the first rule is given a higher number than the second and the policy saved
    page.fill("input[name=rules-0-order]", "5")
    page.click("button[name=_continue]")
    page.wait_for_url("**/change/")
    # Given a regex rule RE2 cannot compile
    regex = add_rule(page, "regex", "Order ids")
    page.fill(f"input[name={regex}-regex_pattern]", "(unclosed")
    page.fill(f"textarea[name={regex}-regex_test]", "order ORD-1")
    # When its pattern is tested, then the engine's message is shown
    message = "regex rule: invalid pattern: missing ): (unclosed"
    page.click(f"textarea[name={regex}-regex_test] ~ .sy-test-button")
    page.wait_for_selector(f".sy-test-error:has-text('{message}')")
    # And a valid pattern shows its matches
    page.fill(f"input[name={regex}-regex_pattern]", r"ORD-\d")
    page.click(f"textarea[name={regex}-regex_test] ~ .sy-test-button")
    page.wait_for_selector(".sy-test-result mark:has-text('ORD-1')")
    # When the invalid pattern is saved, the message sits on the pattern's field
    page.fill(f"input[name={regex}-regex_pattern]", "(unclosed")
    page.click("button[name=_continue]")
    page.wait_for_load_state()
    error = page.locator(f"#id_{regex}-regex_pattern_error")
    assert error.is_visible() and error.text_content().strip() == message
    with console_stack.client() as client:
        stored = client.get(f"/api/v1/moderation/policies/{name}/").json()
    assert [r["name"] for r in stored["rules"]] == ["Partners", "Competitors"]
    assert stored["rules"][1]["params"]["terms"] == ["acme", "globex"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/agents/run/",
        "/admin/agents/modelcall/",
        "/admin/moderation/flag/?status__exact=open",
    ],
    ids=["runs", "ledger", "triage"],
)
def test_the_tables_fit_a_1280_px_screen(page: Any, console_stack: Stack, path: str) -> None:
    page.goto(f"{console_stack.base_url}{path}")
    assert page.locator("#result_list tbody tr").count() > 0
    widths = page.evaluate(
        """() => {
          const table = document.querySelector('#result_list');
          const box = table.parentElement;
          return {page: document.documentElement.scrollWidth,
                  scroll: box.scrollWidth, client: box.clientWidth};
        }"""
    )
    assert widths["page"] <= WIDTH, widths
    assert widths["scroll"] <= widths["client"], widths
