"""The SSRF-safe HTTP client (``core.safe_http.safe_request``) and the ``http_request``
tool, against a real HTTP server on 127.0.0.1. No test sends traffic anywhere else: every
refusal of a non-loopback address is checked to happen before a socket is opened."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from pydantic_ai import ToolFailed

from agents.tools import all_tools, get_tool, tool_config
from agents.tools.registry import ToolContext
from agents.tools.utils import call_tool, to_pydantic_ai
from core import safe_http
from core.address_policy import address_refusal, classify_ip, host_allowed
from core.safe_http import RequestFailed, RequestRefused, check_url, safe_request
from tests.tools.conftest import LocalServer

SECRET = "sk-test-0123456789abcdef"

# --- The address classifier -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
        ("192.0.2.10", "private"),  # documentation range
        ("198.18.0.1", "private"),  # benchmarking range
    ],
)
def test_non_public_addresses_are_classified_with_a_reason(address: str, reason: str) -> None:
    assert classify_ip(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_unicast_addresses_are_not_classified(address: str) -> None:
    assert classify_ip(ipaddress.ip_address(address)) is None


def test_the_escape_hatch_opens_only_the_configured_networks(settings: Any) -> None:
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = ["10.20.0.0/16", "127.0.0.0/8"]
    assert address_refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert address_refusal(ipaddress.ip_address("10.21.0.1")) == "private"
    assert address_refusal(ipaddress.ip_address("::1")) == "loopback"


def test_the_escape_hatch_never_opens_cloud_metadata(settings: Any) -> None:
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = ["169.254.0.0/16", "fd00::/8"]
    assert address_refusal(ipaddress.ip_address("169.254.1.1")) is None
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) == "cloud metadata"
    assert address_refusal(ipaddress.ip_address("fd00:ec2::254")) == "cloud metadata"


def test_an_invalid_escape_hatch_refuses_rather_than_opens(settings: Any) -> None:
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = ["not-a-network"]
    with pytest.raises(RequestRefused, match="HTTP_TOOL_ALLOW_PRIVATE_NETWORKS"):
        address_refusal(ipaddress.ip_address("10.0.0.1"))


# --- Allow-list and URL checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "patterns", "allowed"),
    [
        ("api.example.com", ["api.example.com"], True),
        ("API.Example.com.", ["api.example.com"], True),
        ("evil.com", ["api.example.com"], False),
        ("api.example.com.evil.com", ["api.example.com"], False),
        ("a.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("badexample.com", ["*.example.com"], False),
        ("::1", ["[::1]"], True),
        ("0:0:0:0:0:0:0:1", ["::1"], True),
        ("127.0.0.1", ["*.0.0.1"], False),
        ("anything.com", [], False),
    ],
)
def test_hosts_match_the_allow_list_exactly_or_by_subdomain_wildcard(
    host: str, patterns: list[str], allowed: bool
) -> None:
    assert host_allowed(host, patterns) is allowed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://api.example.com/x", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("gopher://api.example.com/", "Only http and https"),
        ("http://user:pw@api.example.com/", "credentials"),
        ("http://evil.example.net/", "not on this agent's allow-list"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
        ("http:///nohost", "no host"),
        ("not a url", "Only http and https"),
    ],
)
def test_urls_outside_the_policy_are_refused_before_any_lookup(url: str, message: str) -> None:
    with pytest.raises(RequestRefused, match=message):
        check_url(url, ["api.example.com", "metadata.google.internal"])


# --- safe_request against the local server -------------------------------------------------


async def get(url: str, allowed: list[str], **kwargs: Any) -> safe_http.SafeResponse:
    options: dict[str, Any] = {"timeout_s": 5.0, "max_bytes": 100_000} | kwargs
    return await safe_request("GET", url, allowed_hosts=allowed, **options)


@pytest.mark.asyncio
async def test_an_allowed_get_reaches_the_server_and_returns_its_answer(
    server: LocalServer, loopback_allowed: None
) -> None:
    response = await get(server.url("/echo?q=1"), ["127.0.0.1"])
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.url == server.url("/echo?q=1")
    assert json.loads(response.text)["method"] == "GET"
    assert not response.truncated
    assert [s.path for s in server.seen] == ["/echo"]


@pytest.mark.asyncio
async def test_an_allowed_post_sends_its_json_body(
    server: LocalServer, loopback_allowed: None
) -> None:
    response = await safe_request(
        "POST",
        server.url(),
        allowed_hosts=["127.0.0.1"],
        json={"a": [1, 2]},
        timeout_s=5,
        max_bytes=10_000,
    )
    echoed = json.loads(response.text)
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"a": [1, 2]}
    assert echoed["headers"]["Content-Type"] == "application/json"


@pytest.mark.asyncio
async def test_loopback_is_refused_without_the_escape_hatch(
    server: LocalServer, no_private_networks: None, no_connections: list[Any]
) -> None:
    with pytest.raises(RequestRefused, match="loopback"):
        await get(server.url(), ["127.0.0.1"])
    assert server.seen == [] and no_connections == []


@pytest.mark.asyncio
async def test_a_host_not_on_the_allow_list_is_refused(
    server: LocalServer, loopback_allowed: None, no_connections: list[Any]
) -> None:
    with pytest.raises(RequestRefused, match="allow-list"):
        await get(server.url(), ["api.example.com"])
    assert server.seen == [] and no_connections == []


@pytest.mark.parametrize(
    ("url", "allowed", "reason"),
    [
        ("http://localhost:{port}/echo", "localhost", "loopback"),
        ("http://127.0.0.1:{port}/echo", "127.0.0.1", "loopback"),
        ("http://[::1]:{port}/echo", "[::1]", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/echo", "::ffff:127.0.0.1", "loopback"),
        ("http://2130706433:{port}/echo", "2130706433", "loopback"),  # 127.0.0.1 as a number
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254", "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254", "cloud metadata"),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://192.168.0.1:8080/", "192.168.0.1", "private"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1", "private"),
        ("http://[fc00::1]/", "fc00::1", "private"),
        ("http://169.254.1.1/", "169.254.1.1", "link-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
        ("http://0.0.0.0:{port}/", "0.0.0.0", "unspecified"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ],
)
@pytest.mark.asyncio
async def test_non_public_destinations_are_refused_before_a_socket_is_opened(
    url: str,
    allowed: str,
    reason: str,
    server: LocalServer,
    no_private_networks: None,
    no_connections: list[Any],
) -> None:
    with pytest.raises(RequestRefused, match=reason):
        await get(url.format(port=server.port), [allowed])
    assert no_connections == [] and server.seen == []


@pytest.mark.asyncio
async def test_metadata_host_names_are_refused_even_on_the_allow_list(
    no_connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_dns(host: str, port: int) -> list[Any]:
        raise AssertionError("resolved a metadata name")

    monkeypatch.setattr(safe_http, "resolve", no_dns)
    with pytest.raises(RequestRefused, match="metadata"):
        await get("http://metadata.google.internal/", ["metadata.google.internal"])
    assert no_connections == []


@pytest.mark.asyncio
async def test_the_no_connections_guard_does_notice_a_connection(
    server: LocalServer, loopback_allowed: None, no_connections: list[Any]
) -> None:
    # Proves the guard above is not vacuous: an allowed request does reach socket.connect.
    with pytest.raises((AssertionError, ExceptionGroup, RequestFailed)):
        await get(server.url(), ["127.0.0.1"])
    assert no_connections


# --- DNS: resolved once, vetted, pinned -----------------------------------------------------


def fake_dns(answers: list[list[str]]) -> tuple[Callable[..., Awaitable[Any]], list[str]]:
    """A resolver that gives each successive lookup the next answer (the last one repeats)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[Any]:
        calls.append(host)
        answer = answers[min(len(calls), len(answers)) - 1]
        return [ipaddress.ip_address(a) for a in answer]

    return resolve, calls


@pytest.mark.asyncio
async def test_a_hostname_resolving_to_loopback_is_refused(
    server: LocalServer, no_private_networks: None, no_connections: list[Any]
) -> None:
    with pytest.raises(RequestRefused, match="'localhost' resolves to a loopback"):
        await get(server.url(host="localhost"), ["localhost"])
    assert no_connections == []


@pytest.mark.asyncio
async def test_a_host_with_any_private_record_is_refused_even_if_another_is_public(
    monkeypatch: pytest.MonkeyPatch, no_private_networks: None, no_connections: list[Any]
) -> None:
    resolve, _ = fake_dns([["93.184.215.14", "10.0.0.7"]])
    monkeypatch.setattr(safe_http, "resolve", resolve)
    with pytest.raises(RequestRefused, match=r"private address \(10\.0\.0\.7\)"):
        await get("http://api.example.test/", ["api.example.test"])
    assert no_connections == []


@pytest.mark.asyncio
async def test_the_connection_goes_to_the_vetted_address_and_keeps_the_host_name(
    server: LocalServer, loopback_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``api.example.test`` does not exist: the request can only succeed if httpx connects to
    # the address we vetted rather than resolving the name itself. Later lookups would say
    # metadata (a rebinding attack); there must be none.
    resolve, calls = fake_dns([["127.0.0.1"], ["169.254.169.254"]])
    monkeypatch.setattr(safe_http, "resolve", resolve)
    url = f"http://api.example.test:{server.port}/echo"
    response = await get(url, ["api.example.test"])
    assert response.status_code == 200
    assert calls == ["api.example.test"]
    assert server.seen[0].headers["Host"] == f"api.example.test:{server.port}"


@pytest.mark.asyncio
async def test_every_redirect_hop_is_resolved_and_vetted_again(
    server: LocalServer, loopback_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve, calls = fake_dns([["127.0.0.1"], ["169.254.169.254"]])
    monkeypatch.setattr(safe_http, "resolve", resolve)
    target = f"http://api.example.test:{server.port}/echo"
    url = f"{target.replace('/echo', '/redirect')}?to={target}"
    with pytest.raises(RequestRefused, match="cloud metadata"):
        await get(url, ["api.example.test"])
    assert calls == ["api.example.test", "api.example.test"]
    assert [s.path for s in server.seen] == ["/redirect"]


# --- Redirects --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_redirect_to_an_allowed_url_is_followed(
    server: LocalServer, loopback_allowed: None
) -> None:
    response = await get(server.url(f"/redirect?to={server.url('/echo')}"), ["127.0.0.1"])
    assert response.status_code == 200
    assert response.url == server.url("/echo")
    assert response.redirects == (server.url(f"/redirect?to={server.url('/echo')}"),)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://evil.example.net/", "allow-list"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::1]/", "loopback"),  # outside the 127.0.0.0/8 escape hatch
        ("http://10.0.0.1/", "private"),
        ("file:///etc/passwd", "Only http and https"),
    ],
)
@pytest.mark.asyncio
async def test_a_redirect_to_a_forbidden_destination_is_refused_at_the_hop(
    target: str,
    message: str,
    server: LocalServer,
    loopback_allowed: None,
) -> None:
    allowed = ["127.0.0.1", "169.254.169.254", "[::1]", "10.0.0.1"]
    with pytest.raises(RequestRefused, match=message):
        await get(server.url(f"/redirect?to={target}"), allowed)
    assert [s.path for s in server.seen] == ["/redirect"]


@pytest.mark.asyncio
async def test_redirect_loops_stop_at_the_limit(
    server: LocalServer, loopback_allowed: None
) -> None:
    with pytest.raises(RequestFailed, match="Too many redirects"):
        await get(server.url("/loop"), ["127.0.0.1"], max_redirects=2)
    assert len(server.seen) == 3


@pytest.mark.asyncio
async def test_a_post_redirected_with_303_becomes_a_get_without_the_body(
    server: LocalServer, loopback_allowed: None
) -> None:
    response = await safe_request(
        "POST",
        server.url(f"/redirect?status=303&to={server.url('/echo')}"),
        allowed_hosts=["127.0.0.1"],
        json={"x": 1},
        timeout_s=5,
        max_bytes=10_000,
    )
    echoed = json.loads(response.text)
    assert echoed["method"] == "GET" and echoed["body"] == ""


@pytest.mark.asyncio
async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    server: LocalServer, loopback_allowed: None
) -> None:
    other_origin = server.url("/echo", host="localhost")
    response = await get(
        server.url(f"/redirect?to={other_origin}"),
        ["127.0.0.1", "localhost"],
        headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "Accept": "a/b"},
        sensitive_headers=["X-Api-Key"],
    )
    first, second = server.seen
    assert first.headers["Authorization"] == f"Bearer {SECRET}"
    assert "Authorization" not in second.headers and "X-Api-Key" not in second.headers
    assert second.headers["Accept"] == "a/b"
    assert response.url == other_origin


@pytest.mark.asyncio
async def test_credentials_do_follow_a_redirect_within_the_same_origin(
    server: LocalServer, loopback_allowed: None
) -> None:
    await get(
        server.url(f"/redirect?to={server.url('/echo')}"),
        ["127.0.0.1"],
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert server.seen[1].headers["Authorization"] == f"Bearer {SECRET}"


# --- Size and time limits ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_large_response_is_cut_at_max_bytes(
    server: LocalServer, loopback_allowed: None
) -> None:
    response = await get(server.url("/big"), ["127.0.0.1"], max_bytes=1_000)
    assert response.truncated and response.content == b"x" * 1_000


@pytest.mark.asyncio
async def test_an_endless_response_is_stopped_rather_than_read_to_the_end(
    server: LocalServer, loopback_allowed: None
) -> None:
    started = time.monotonic()
    response = await get(server.url("/endless"), ["127.0.0.1"], max_bytes=200_000)
    assert response.truncated and len(response.content) == 200_000
    assert time.monotonic() - started < 3


@pytest.mark.asyncio
async def test_a_compressed_response_cannot_expand_past_max_bytes(
    server: LocalServer, loopback_allowed: None
) -> None:
    response = await get(server.url("/gzip-bomb"), ["127.0.0.1"], max_bytes=10_000)
    assert response.truncated and response.content == b"\0" * 10_000


@pytest.mark.asyncio
async def test_a_slow_server_runs_into_the_time_limit(
    server: LocalServer, loopback_allowed: None
) -> None:
    started = time.monotonic()
    with pytest.raises(RequestFailed, match="timed out after 0.3 s"):
        await get(server.url("/slow?s=3"), ["127.0.0.1"], timeout_s=0.3)
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_a_caller_may_not_set_the_host_header(
    server: LocalServer, loopback_allowed: None
) -> None:
    with pytest.raises(RequestRefused, match="Host header"):
        await get(server.url(), ["127.0.0.1"], headers={"host": "internal.example"})
    assert server.seen == []


@pytest.mark.asyncio
async def test_request_headers_are_never_logged(
    server: LocalServer, loopback_allowed: None
) -> None:
    with structlog.testing.capture_logs() as logs:
        await get(
            server.url("/echo?token=abc"),
            ["127.0.0.1"],
            headers={"Authorization": f"Bearer {SECRET}"},
        )
    assert logs and logs[0]["event"] == "http_tool_request"
    assert SECRET not in repr(logs) and "token=abc" not in repr(logs)


# --- The http_request tool ---------------------------------------------------------------------


def fake_vault(value: str = SECRET) -> tuple[Callable[[str], Awaitable[str]], list[str]]:
    asked: list[str] = []

    async def reveal(name: str) -> str:
        asked.append(name)
        return value

    return reveal, asked


def context(**config: Any) -> ToolContext:
    reveal = config.pop("secret", None)
    return ToolContext(run_id="run-1", agent="tester", tool_config=config, secret=reveal)


async def call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return json.loads(await call_tool(get_tool("http_request"), args, ctx))


@pytest.mark.asyncio
async def test_the_tool_returns_status_type_final_url_and_body(
    server: LocalServer, loopback_allowed: None
) -> None:
    result = await call({"url": server.url()}, context(allowed_hosts=["127.0.0.1"]))
    assert result["status"] == 200
    assert result["content_type"] == "application/json"
    assert result["url"] == server.url()
    assert result["truncated"] is False
    assert json.loads(result["body"])["method"] == "GET"


@pytest.mark.asyncio
async def test_the_tool_posts_json(server: LocalServer, loopback_allowed: None) -> None:
    result = await call(
        {"method": "POST", "url": server.url(), "json": {"n": 1}, "headers": {"Accept": "*/*"}},
        context(allowed_hosts=["127.0.0.1"]),
    )
    assert json.loads(json.loads(result["body"])["body"]) == {"n": 1}
    assert server.seen[0].headers["Accept"] == "*/*"


@pytest.mark.asyncio
async def test_the_auth_secret_reaches_the_server_but_not_the_result(
    server: LocalServer, loopback_allowed: None
) -> None:
    reveal, asked = fake_vault()
    ctx = context(allowed_hosts=["127.0.0.1"], auth_secret="example-key", secret=reveal)
    output = await call_tool(get_tool("http_request"), {"url": server.url()}, ctx)
    assert asked == ["example-key"]
    assert server.seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    # The echo server sent the header straight back; the tool scrubbed it.
    assert SECRET not in output
    assert json.loads(json.loads(output)["body"])["headers"]["Authorization"] == "[redacted]"


@pytest.mark.asyncio
async def test_the_auth_secret_can_go_in_a_custom_header_without_a_scheme(
    server: LocalServer, loopback_allowed: None
) -> None:
    reveal, _ = fake_vault()
    ctx = context(
        allowed_hosts=["127.0.0.1"],
        auth_secret="example-key",
        auth_header="X-Api-Key",
        auth_scheme=None,
        secret=reveal,
    )
    output = await call_tool(get_tool("http_request"), {"url": server.url()}, ctx)
    assert server.seen[0].headers["X-Api-Key"] == SECRET
    assert "Authorization" not in server.seen[0].headers
    assert SECRET not in output


@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "authorization",
        "Cookie",
        "Host",
        "Proxy-Authorization",
        "Transfer-Encoding",
        "X-Forwarded-For",
        "Bad Header",
    ],
)
@pytest.mark.asyncio
async def test_headers_the_model_may_not_set_are_refused(
    header: str, server: LocalServer, loopback_allowed: None
) -> None:
    with pytest.raises(ToolFailed, match="headers"):
        await call(
            {"url": server.url(), "headers": {header: "x"}}, context(allowed_hosts=["127.0.0.1"])
        )
    assert server.seen == []


@pytest.mark.asyncio
async def test_the_model_may_not_set_the_configured_auth_header(
    server: LocalServer, loopback_allowed: None
) -> None:
    reveal, asked = fake_vault()
    ctx = context(
        allowed_hosts=["127.0.0.1"], auth_secret="k", auth_header="X-Api-Key", secret=reveal
    )
    with pytest.raises(ToolFailed, match="X-Api-Key"):
        await call({"url": server.url(), "headers": {"x-api-key": "mine"}}, ctx)
    assert asked == [] and server.seen == []


@pytest.mark.asyncio
async def test_a_json_body_with_get_is_an_argument_error() -> None:
    with pytest.raises(ToolFailed, match="only sent with POST"):
        await call(
            {"url": "http://api.example.com/", "json": {"a": 1}},
            context(allowed_hosts=["api.example.com"]),
        )


@pytest.mark.asyncio
async def test_refusals_reach_the_model_as_tool_errors(
    server: LocalServer, no_private_networks: None, no_connections: list[Any]
) -> None:
    with pytest.raises(ToolFailed, match="loopback"):
        await call({"url": server.url()}, context(allowed_hosts=["127.0.0.1"]))
    with pytest.raises(ToolFailed, match="allow-list"):
        await call({"url": "http://10.0.0.1/"}, context(allowed_hosts=["127.0.0.1"]))
    assert no_connections == []


@pytest.mark.asyncio
async def test_without_allowed_hosts_the_tool_refuses_everything() -> None:
    with pytest.raises(ToolFailed, match="no allowed hosts"):
        await call({"url": "http://api.example.com/"}, context())


@pytest.mark.asyncio
async def test_a_misconfigured_agent_gets_a_clear_error() -> None:
    with pytest.raises(ToolFailed, match="misconfigured.*timeout_s"):
        await call(
            {"url": "http://api.example.com/"},
            context(allowed_hosts=["api.example.com"], timeout_s=3600),
        )


@pytest.mark.asyncio
async def test_a_secret_without_vault_access_is_an_error_not_an_anonymous_call(
    server: LocalServer, loopback_allowed: None
) -> None:
    with pytest.raises(ToolFailed, match="no vault access"):
        await call({"url": server.url()}, context(allowed_hosts=["127.0.0.1"], auth_secret="k"))
    assert server.seen == []


@pytest.mark.asyncio
async def test_a_vault_failure_is_an_error_that_does_not_echo_its_details(
    server: LocalServer, loopback_allowed: None
) -> None:
    async def broken(name: str) -> str:
        raise RuntimeError(f"decryption failed near {SECRET}")

    ctx = context(allowed_hosts=["127.0.0.1"], auth_secret="k", secret=broken)
    with pytest.raises(ToolFailed) as caught:
        await call({"url": server.url()}, ctx)
    assert "'k' is not available" in str(caught.value) and SECRET not in str(caught.value)
    assert server.seen == []


@pytest.mark.asyncio
async def test_binary_bodies_are_described_not_dumped(
    server: LocalServer, loopback_allowed: None
) -> None:
    result = await call({"url": server.url("/binary")}, context(allowed_hosts=["127.0.0.1"]))
    assert result["body"] == "[256 bytes of image/png, not shown]"


@pytest.mark.asyncio
async def test_the_tool_reports_truncation_at_the_agents_max_bytes(
    server: LocalServer, loopback_allowed: None
) -> None:
    result = await call(
        {"url": server.url("/big")}, context(allowed_hosts=["127.0.0.1"], max_bytes=500)
    )
    assert result["truncated"] is True and result["body"] == "x" * 500


@pytest.mark.asyncio
async def test_the_tool_reports_a_timeout_as_an_error(
    server: LocalServer, loopback_allowed: None
) -> None:
    with pytest.raises(ToolFailed, match="timed out"):
        await call(
            {"url": server.url("/slow?s=2")}, context(allowed_hosts=["127.0.0.1"], timeout_s=0.2)
        )


# --- Registry and context plumbing -----------------------------------------------------------


def test_http_request_is_registered_and_takes_a_context() -> None:
    spec = all_tools()["http_request"]
    assert spec.takes_context
    assert not get_tool("calculator").takes_context
    assert "json" in spec.args_model.model_json_schema()["properties"]


@pytest.mark.asyncio
async def test_context_free_tools_still_run_with_or_without_a_context() -> None:
    calculator = get_tool("calculator")
    assert await call_tool(calculator, {"expression": "6*7"}) == "42"
    assert await call_tool(calculator, {"expression": "6*7"}, context()) == "42"


@pytest.mark.asyncio
async def test_the_pydantic_ai_tool_carries_the_run_context(
    server: LocalServer, loopback_allowed: None
) -> None:
    tool = to_pydantic_ai(get_tool("http_request"), context(allowed_hosts=["127.0.0.1"]))
    output = await tool.function(url=server.url())  # type: ignore[call-arg]
    assert json.loads(output)["status"] == 200


def test_tool_config_reads_one_tools_section_of_a_run_config() -> None:
    config = {"tool_config": {"http_request": {"allowed_hosts": ["a.example"]}}}
    assert tool_config(config, "http_request") == {"allowed_hosts": ["a.example"]}
    assert tool_config(config, "calculator") == {}
    assert tool_config({}, "http_request") == {}


def test_the_tool_time_limit_is_above_the_largest_request_deadline() -> None:
    # The request's own deadline should fire first, with its clearer message.
    from agents.tools.http_request import MAX_CONFIG_TIMEOUT_S

    assert get_tool("http_request").timeout_s > MAX_CONFIG_TIMEOUT_S


@pytest.mark.asyncio
async def test_an_ipv6_literal_host_is_pinned_and_reached_when_escaped(settings: Any) -> None:
    import socket
    import threading
    from http.server import ThreadingHTTPServer

    from tests.conftest import require_service
    from tests.fakes.quiet_http import QuietHandler

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Ok(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    try:
        httpd = Server(("::1", 0), Ok)
    except OSError:
        require_service("An IPv6 loopback (::1)", False)  # CI machines have one
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    settings.HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = ["::1/128"]
    try:
        response = await get(f"http://[::1]:{httpd.server_address[1]}/", ["[::1]"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert response.text == "ok"
