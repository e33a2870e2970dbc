"""External moderation rules against a local OpenAI-moderation-compatible HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from moderation.engine import Policy, RuleSpec
from tests.fakes.quiet_http import QuietHandler

from . import samples
from .samples import ALL_STAGES

REQUESTS: list[dict] = []


class ModerationHandler(QuietHandler):
    """Speaks POST /<scenario>/moderations like the OpenAI moderation endpoint."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        REQUESTS.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        scenario = self.path.strip("/").split("/")[0]
        if scenario == "slow":
            time.sleep(1.0)
        if scenario == "error":
            self._send(500, {"error": {"message": "boom"}})
            return
        flagged = scenario == "flagged"
        self._send(
            200,
            {
                "id": "modr-1",
                "model": body["model"],
                "results": [
                    {
                        "flagged": flagged,
                        "categories": {"hate": False, "violence": flagged},
                        "category_scores": {"hate": 0.01, "violence": 0.93 if flagged else 0.02},
                    }
                ],
            },
        )

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    """The fake API listens on loopback, which the outbound policy allows only when told."""
    settings.MODERATION_ALLOW_PRIVATE_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModerationHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def external_policy(base_url: str, action: str = "flag", **params: object) -> Policy:
    rules = [
        RuleSpec("pii", "PII", "pii", {}, ALL_STAGES, "redact"),
        RuleSpec(
            "ext",
            "OpenAI moderation",
            "external",
            {"base_url": base_url, "timeout_s": 0.3, **params},
            ALL_STAGES,
            action,
        ),
    ]
    return Policy(rules)


def scan(policy: Policy, text: str) -> object:
    return asyncio.run(policy.ascan(text, "input", external_key=lambda rule: "test-key"))


def test_a_flagged_response_becomes_a_finding_per_category(server_url: str) -> None:
    result = scan(external_policy(f"{server_url}/flagged"), "some text")
    assert [f.kind for f in result.findings] == ["external:violence"]  # type: ignore[attr-defined]
    assert REQUESTS[-1]["auth"] == "Bearer test-key"
    assert REQUESTS[-1]["body"]["model"] == "omni-moderation-latest"


def test_a_clean_response_produces_no_finding(server_url: str) -> None:
    result = scan(external_policy(f"{server_url}/clean"), "hello")
    assert result.findings == [] and result.errors == []  # type: ignore[attr-defined]


def test_the_external_api_only_sees_redacted_text(server_url: str) -> None:
    scan(external_policy(f"{server_url}/clean"), f"mail {samples.EMAIL}")
    assert REQUESTS[-1]["body"]["input"] == "mail [REDACTED:email]"


def test_a_category_filter_and_threshold_are_applied(server_url: str) -> None:
    hate_only = external_policy(f"{server_url}/flagged", categories=["hate"])
    assert scan(hate_only, "x").findings == []  # type: ignore[attr-defined]
    low = external_policy(f"{server_url}/clean", threshold=0.01)
    assert [f.kind for f in scan(low, "x").findings] == [  # type: ignore[attr-defined]
        "external:hate",
        "external:violence",
    ]


def test_a_timeout_fails_open_with_an_error_note(server_url: str) -> None:
    result = scan(external_policy(f"{server_url}/slow", fail_mode="open"), "x")
    assert result.findings == []  # type: ignore[attr-defined]
    assert "timed out" in result.errors[0]  # type: ignore[attr-defined]


def test_a_timeout_fails_closed_with_an_unavailable_finding(server_url: str) -> None:
    result = scan(external_policy(f"{server_url}/slow", action="block", fail_mode="closed"), "x")
    assert [f.kind for f in result.findings] == ["external_unavailable"]  # type: ignore[attr-defined]
    assert result.blocked is not None  # type: ignore[attr-defined]


def test_a_server_error_fails_according_to_the_rule(server_url: str) -> None:
    closed = scan(external_policy(f"{server_url}/error", fail_mode="closed"), "x")
    assert [f.kind for f in closed.findings] == ["external_unavailable"]  # type: ignore[attr-defined]
    opened = scan(external_policy(f"{server_url}/error", fail_mode="open"), "x")
    assert opened.findings == [] and "HTTP 500" in opened.errors[0]  # type: ignore[attr-defined]
    assert "test-key" not in opened.errors[0]  # type: ignore[attr-defined]


def test_a_redacting_external_rule_replaces_the_whole_text(server_url: str) -> None:
    result = scan(external_policy(f"{server_url}/flagged", action="redact"), "bad words")
    assert result.text == "[REDACTED:external:violence]"  # type: ignore[attr-defined]


def test_sync_scan_skips_external_rules(server_url: str) -> None:
    before = len(REQUESTS)
    assert external_policy(f"{server_url}/flagged").scan("x", "input").findings == []
    assert len(REQUESTS) == before


def test_a_private_address_is_refused_without_the_setting_and_nothing_is_sent(
    server_url: str, settings: Any
) -> None:
    # given no private network allowed for moderation (the default)
    settings.MODERATION_ALLOW_PRIVATE_NETWORKS = []
    REQUESTS.clear()
    policy = external_policy(f"{server_url}/flagged", fail_mode="closed")
    # when the rule runs
    result = asyncio.run(policy.ascan("hello", "input"))
    # then the SSRF-safe client refused the loopback address before sending anything
    assert REQUESTS == []
    assert [f.kind for f in result.findings] == ["external_unavailable"]
    assert "refused by the outbound policy" in result.errors[0]


def test_a_cloud_metadata_address_is_refused_even_when_private_networks_are_allowed(
    settings: Any,
) -> None:
    settings.MODERATION_ALLOW_PRIVATE_NETWORKS = ["169.254.0.0/16"]
    policy = external_policy("http://169.254.169.254/v1", fail_mode="open")
    result = asyncio.run(policy.ascan("hello", "input"))
    assert result.findings == []
    assert "refused by the outbound policy" in result.errors[0]
