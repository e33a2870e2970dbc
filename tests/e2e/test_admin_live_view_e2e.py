"""End to end in a real headless Chromium: the admin's live run view.

Debian's ``chromium`` driven by Playwright's Python package (no browser download):
``apt-get install -y chromium`` and ``pip install playwright``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

LONG_INPUT = " ".join(f"word{i}" for i in range(150))  # ~3 s at 20 ms per word


def admin_page(browser: Any, stack: Stack) -> Any:
    page = browser.new_page()
    page.goto(f"{stack.base_url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", stack.admin_password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{stack.base_url}/admin/")
    return page


def start_test_run(page: Any, stack: Stack, text: str) -> None:
    page.goto(f"{stack.base_url}/admin/agents/agent/")
    page.click("text=demo-assistant")
    page.fill("#test-run-form textarea", text)
    page.click("#test-run-form input[type=submit]")
    page.wait_for_url("**/admin/agents/run/*/change/")


def test_a_test_run_started_from_the_agent_page_streams_its_text_live(
    browser: Any, stack: Stack
) -> None:
    # Given an operator on the demo agent's admin page
    page = admin_page(browser, stack)
    # When they start a test run
    start_test_run(page, stack, LONG_INPUT)
    # Then the run's live view shows the text growing while the run is still going
    timeline = page.locator("#run-timeline")
    page.wait_for_function(
        "document.querySelector('#run-timeline').textContent.includes('word20')", timeout=45_000
    )
    assert page.locator("#run-live-state").get_attribute("data-status") != "succeeded"
    assert "word149" not in timeline.text_content()
    field = page.locator("#run-fields [data-field=finished_at]")
    assert field.text_content() == "-"
    # And it ends with the succeeded status and every field updated without a reload
    page.wait_for_function(
        "document.querySelector('#run-live').dataset.synced === 'succeeded'", timeout=45_000
    )
    assert page.locator("#run-live-state").text_content() == "succeeded"
    output = page.locator("#run-output").text_content()
    assert "word149" in output and "that is all I can say offline" in output
    assert field.text_content() != "-" and field.text_content().count(":") == 2  # seconds
    assert page.locator("[data-field=duration]").text_content().endswith(" s")
    assert int(page.locator("[data-field=input_tokens]").text_content()) > 0
    assert int(page.locator("[data-field=output_tokens]").text_content()) > 0
    assert page.locator("[data-field=requests]").text_content() == "1"
    # And the answer is shown once: the timeline folds the message that is the output
    assert "word149" not in timeline.text_content()
    assert page.locator("#run-cancel-form").is_hidden()
    # And a reload renders the same page from the log, without a cancel button
    page.reload()
    assert "word149" in page.locator("#run-output").text_content()
    assert page.locator("#run-fields [data-field=finished_at]").text_content() != "-"
    # And the timeline filter hides a kind of event
    page.uncheck("#run-timeline-filter input[value=run]")
    assert page.locator("#run-timeline .tl-run").first.is_hidden()
    assert page.locator("#run-timeline .tl-message").first.is_visible()
    page.close()


def test_the_cancel_button_cancels_a_streaming_run(browser: Any, stack: Stack) -> None:
    # Given a streaming test run in the live view
    page = admin_page(browser, stack)
    start_test_run(page, stack, LONG_INPUT)
    page.wait_for_function(
        "document.querySelector('#run-timeline').textContent.includes('word5')", timeout=45_000
    )
    # When the operator presses cancel
    page.click("#run-cancel")
    # Then the run ends cancelled, live, and the button goes away
    page.wait_for_function(
        "document.querySelector('#run-live-state').dataset.status === 'cancelled'",
        timeout=45_000,
    )
    assert page.locator("#run-cancel-form").is_hidden()
    assert "run.cancelled" in page.locator("#run-timeline").text_content()
    run_id = page.url.rstrip("/").split("/")[-2]
    with stack.client() as client:
        assert client.get(f"/api/v1/runs/{run_id}/").json()["status"] == "cancelled"
    page.close()
