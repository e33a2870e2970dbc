"""End to end: what a CI pipeline that keeps its agents in version control does, over the
REST API only, against real daphne + Celery: a vault secret, a provider pointing at the
local fake OpenAI-compatible server, its connection check, a moderation policy and an agent;
run it, change its instructions, see version 2 run, restore version 1, read the usage.
The fake provider (this test process, 127.0.0.1: the network edge) records what it was sent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, Stack
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = pytest.mark.e2e

KEY_VALUE = "sk-e2e-management-0123456789abcdef"
V1 = "Answer support questions in two sentences."
V2 = "Answer in one sentence, in French."
TERMINAL = {"succeeded", "failed", "timed_out", "blocked", "cancelled"}


@pytest.fixture
def api(distributed_stack: Stack, provider: FakeProviderServer) -> Iterator[httpx.Client]:
    provider.reset()
    with distributed_stack.client() as client:  # the seeded superuser's token
        yield client


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def finished_run(api: httpx.Client, slug: str, text: str) -> dict[str, Any]:
    run = created(api.post(f"/api/v1/agents/{slug}/runs/", json={"input": text}))
    deadline = time.monotonic() + 60
    while run["status"] not in TERMINAL:
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
        response = api.get(f"/api/v1/runs/{run['id']}/")
        assert response.status_code == 200, response.text
        run = response.json()
    return run


def instructions_sent(provider: FakeProviderServer, text: str) -> list[str]:
    """The system messages of the chat completions whose user message was ``text``."""
    sent = []
    for request in provider.requests:
        body = request["json"]
        if request["path"] != "/v1/chat/completions" or not isinstance(body, dict):
            continue
        messages = body.get("messages", [])
        if any(m.get("role") == "user" and m.get("content") == text for m in messages):
            sent += [m["content"] for m in messages if m.get("role") == "system"]
    return sent


def test_a_pipeline_defines_runs_changes_and_rolls_back_an_agent(
    api: httpx.Client, provider: FakeProviderServer
) -> None:
    # given a key in the vault, a provider that uses it and passes its check
    created(api.post("/api/v1/secrets/", json={"name": "ci-openai-key", "value": KEY_VALUE}))
    body = {
        "name": "ci-local",
        "kind": "openai",
        "base_url": provider.base_url,
        "api_key_secret": "ci-openai-key",
        "max_retries": 0,
    }
    assert KEY_VALUE not in api.post("/api/v1/providers/", json=body).text
    check = api.post("/api/v1/providers/ci-local/check/")
    assert check.status_code == 200, check.text
    assert check.json()["ok"] is True, check.text
    [listing] = [r for r in provider.requests if r["path"] == "/v1/models"]
    assert listing["headers"]["authorization"] == f"Bearer {KEY_VALUE}"
    # and a moderation policy and an agent that uses both
    rules = [{"name": "codename", "kind": "keyword", "params": {"terms": ["bluebird"]}}]
    created(api.post("/api/v1/moderation/policies/", json={"name": "ci-guard", "rules": rules}))
    agent = created(
        api.post(
            "/api/v1/agents/",
            json={
                "slug": "ci-support",
                "name": "Support",
                "provider": "ci-local",
                "model_name": "gpt-4o-mini",
                "instructions": V1,
                "moderation_policy": "ci-guard",
                "max_requests": 3,
            },
        )
    )
    assert agent["version"] == 1

    # when it runs, then it succeeds with the provider's answer, at version 1
    first = finished_run(api, "ci-support", "first question")
    assert first["status"] == "succeeded", first
    assert first["output"] == "Hello from the fake provider."
    assert first["agent_version"] == 1
    assert instructions_sent(provider, "first question") == [V1]

    # when the instructions change, then the next run is version 2 and sends them
    patched = api.patch("/api/v1/agents/ci-support/", json={"instructions": V2})
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    second = finished_run(api, "ci-support", "second question")
    assert (second["status"], second["agent_version"]) == ("succeeded", 2)
    assert instructions_sent(provider, "second question") == [V2]

    # when version 1 is restored, then a new version equal to it runs
    restored = created(api.post("/api/v1/agents/ci-support/versions/1/restore/"))
    assert restored["number"] == 3
    assert restored["config"]["instructions"] == V1
    third = finished_run(api, "ci-support", "third question")
    assert (third["status"], third["agent_version"]) == ("succeeded", 3)
    assert instructions_sent(provider, "third question") == [V1]
    versions = api.get("/api/v1/agents/ci-support/versions/").json()["results"]
    assert [v["number"] for v in versions] == [3, 2, 1]

    # and the usage counts the three runs and the fake provider's tokens
    usage = api.get("/api/v1/usage/", params={"group_by": "agent", "agent": "ci-support"})
    assert usage.status_code == 200, usage.text
    [group] = usage.json()["results"]
    assert group["agent"] == "ci-support"
    assert (group["runs"]["total"], group["runs"]["succeeded"]) == (3, 3)
    assert group["model_requests"] == 3
    assert (group["input_tokens"], group["output_tokens"]) == (33, 21)


def test_the_check_returns_the_providers_401_without_the_key(
    api: httpx.Client, provider: FakeProviderServer
) -> None:
    # given a provider whose server refuses the key and echoes it back, as OpenAI does
    created(api.post("/api/v1/secrets/", json={"name": "ci-bad-key", "value": KEY_VALUE}))
    body = {
        "name": "ci-refused",
        "kind": "openai",
        "base_url": provider.base_url,
        "api_key_secret": "ci-bad-key",
    }
    created(api.post("/api/v1/providers/", json=body))
    echo = {"error": {"message": f"Incorrect API key provided: {KEY_VALUE}.", "code": "x"}}
    provider.script(Scenario(kind="status", status=401, error_body=echo, endpoint="models"))
    # when its connection is checked
    check = api.post("/api/v1/providers/ci-refused/check/")
    # then the answer is the provider's error, with the key redacted
    assert check.status_code == 200, check.text
    result = check.json()
    assert (result["ok"], result["status"]) == (False, 401)
    assert result["error"] == {
        "code": "authentication_failed",
        "message": "Incorrect API key provided: [redacted].",
    }
    assert KEY_VALUE not in check.text


def test_the_python_client_example_in_the_api_docs_works(distributed_stack: Stack) -> None:
    # given the httpx example of docs/api.md, as written
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("## A Python client (httpx)") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```\n")]
    # when it runs against the stack
    env = {**os.environ, "SY": distributed_stack.base_url, "TOKEN": distributed_stack.token}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    # then it streamed the answer and read the usage, as the docs say it prints
    assert done.returncode == 0, done.stderr
    assert "The result is 84." in done.stdout, done.stdout
    assert re.search(r"(?m)^example-calc 1 succeeded, cost \d+\.\d{6}$", done.stdout), done.stdout
