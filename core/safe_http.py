"""A safe outbound HTTP client.

Tools that fetch URLs chosen by a model are an SSRF risk: the model (or a prompt injected
into it) can point them at the metadata service, at localhost, or at the private network.
``safe_request`` checks every hop before anything is sent:

1. the URL is http(s), without credentials, and its host is on the caller's allow-list;
2. the host is resolved here, once, and every address it resolves to must be public
   unicast (or inside an operator-approved private network);
3. the connection goes to one of those vetted addresses: a network backend for httpcore
   maps the hostname to the pinned addresses and refuses any other host, so a DNS answer
   that changes between the check and the connect (rebinding) is never used. The URL keeps
   its hostname, so the Host header, TLS SNI and certificate verification are unchanged;
4. redirects are followed by hand, and each hop goes through 1-3 again.

The response body is streamed and cut at ``max_bytes``; the whole exchange, DNS included,
runs under one deadline. Request headers are never logged.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import socket
import ssl
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
import structlog

from core.address_policy import (
    DEFAULT_PRIVATE_NETWORKS_SETTING,
    METADATA_HOSTNAMES,
    IPAddress,
    _ip_literal,
    _normalise_host,
    address_refusal,
    host_allowed,
)

log = structlog.get_logger(__name__)


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Credentials that must not follow a redirect to another origin.
ALWAYS_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
USER_AGENT = "Switchyard-http-tool/1.0"


class OutboundError(Exception):
    """An outbound request that was refused or failed; the message is safe to show (tools
    hand it to the model as their result)."""


class RequestRefused(OutboundError):
    """The request breaks the outbound policy; nothing was sent."""


class RequestFailed(OutboundError):
    """The request was allowed but did not complete (DNS, connect, timeout, protocol)."""


@dataclass(frozen=True)
class SafeResponse:
    status_code: int
    url: str  # the final URL, after redirects
    headers: httpx.Headers
    content: bytes  # at most max_bytes, decoded from gzip/deflate when the server used it
    truncated: bool
    redirects: tuple[str, ...] = ()

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def text(self) -> str:
        return self.content.decode(_charset(self.content_type), errors="replace")


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            try:
                return codecs.lookup(value.strip("\"' ")).name
            except LookupError:
                break
    return "utf-8"


# Addresses -----------------------------------------------------------------------------------


# Hosts and URLs ------------------------------------------------------------------------------


def check_url(url: str | httpx.URL, allowed_hosts: Sequence[str]) -> httpx.URL:
    """Parse ``url`` and apply the static part of the policy (scheme, credentials,
    allow-list, metadata names); raises ``RequestRefused``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise RequestRefused(f"Not a valid URL: {str(url)[:200]!r}.") from None
    if parsed.scheme not in ("http", "https"):
        raise RequestRefused(f"Only http and https URLs are allowed, not {parsed.scheme!r}.")
    if not parsed.raw_host:
        raise RequestRefused("The URL has no host.")
    if parsed.userinfo:
        raise RequestRefused("URLs with credentials (user:password@) are not allowed.")
    host = _ascii_host(parsed)
    if _normalise_host(host) in METADATA_HOSTNAMES:
        raise RequestRefused(f"{host} is a cloud metadata endpoint.")
    if not host_allowed(host, allowed_hosts):
        raise RequestRefused(f"Host {host!r} is not on this agent's allow-list.")
    return parsed


def _ascii_host(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii").lower()


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself, with no
    lookup). Module-level so tests can stand in for DNS."""
    literal = _ip_literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise RequestFailed(f"Cannot resolve host {host!r}.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


async def vet_destination(
    url: httpx.URL, setting: str = DEFAULT_PRIVATE_NETWORKS_SETTING
) -> list[IPAddress]:
    """Resolve the URL's host and return its addresses if every one of them is allowed.
    All, not any: a host with one public and one private record is refused, since which
    one a client would use is not ours to predict."""
    host = _ascii_host(url)
    addresses = await resolve(host, url.port or (443 if url.scheme == "https" else 80))
    if not addresses:
        raise RequestFailed(f"Host {host!r} has no addresses.")
    for ip in addresses:
        reason = address_refusal(ip, setting)
        if reason is not None:
            raise RequestRefused(f"Host {host!r} resolves to a {reason} address ({ip}).")
    return addresses


# Pinned connections --------------------------------------------------------------------------


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses vetted for the host being requested; any other host
    (or a Unix socket) is refused at the socket layer."""

    def __init__(self, pins: dict[str, list[IPAddress]]) -> None:
        self._pins = pins
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get(host.lower())
        if not addresses:
            raise httpcore.ConnectError(f"Refusing to connect to unvetted host {host!r}.")
        error: Exception | None = None
        for ip in addresses:  # fall back across vetted addresses, like a resolver would
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not allowed.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA bundle is slow, and a client-side context is safe to share.
    return httpx.create_ssl_context(trust_env=False)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses ``PinnedBackend``.

    httpx does not take a network backend, so the pool is swapped after construction; the
    check below makes an httpx upgrade that renames the attribute fail loudly instead of
    silently connecting unpinned.
    """

    def __init__(self, backend: PinnedBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False, retries=0)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx internals changed: cannot pin connections.")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=backend, retries=0, http2=False
        )


# The request ---------------------------------------------------------------------------------


class _BoundedBody:
    """Collects a streamed body up to ``max_bytes``, decoding gzip/deflate in bounded steps
    so a small compressed response cannot expand past the cap."""

    def __init__(self, max_bytes: int, content_encoding: str) -> None:
        self.max_bytes = max_bytes
        self.data = bytearray()
        self.raw_bytes = 0
        self.truncated = False
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(31 if "gzip" in encoding else 15)
        else:
            raise RequestFailed(f"Unsupported content-encoding {content_encoding!r}.")

    def feed(self, chunk: bytes) -> bool:
        """Add a raw chunk; False once the cap is reached (stop reading)."""
        self.raw_bytes += len(chunk)
        room = self.max_bytes - len(self.data)
        try:
            data = chunk if self._zlib is None else self._zlib.decompress(chunk, room + 1)
        except zlib.error:
            raise RequestFailed("The response body is not valid gzip/deflate data.") from None
        if len(data) > room or self.raw_bytes > self.max_bytes:
            self.data += data[:room]
            self.truncated = True
            return False
        self.data += data
        return True


@dataclass
class _Hop:
    status_code: int
    headers: httpx.Headers
    body: _BoundedBody | None = None


def _log_url(url: httpx.URL) -> str:
    # Scheme, host and path only: queries can carry tokens the model was given.
    return str(url.copy_with(query=None, fragment=None))


async def _send(
    method: str,
    url: httpx.URL,
    headers: httpx.Headers,
    json_body: Any,
    *,
    timeout_s: float,
    max_bytes: int,
    ssl_context: ssl.SSLContext,
    content: bytes | None = None,
    private_networks_setting: str = DEFAULT_PRIVATE_NETWORKS_SETTING,
) -> _Hop:
    addresses = await vet_destination(url, private_networks_setting)
    backend = PinnedBackend({_ascii_host(url): addresses})
    transport = PinnedTransport(backend, ssl_context)
    async with (
        httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False, timeout=timeout_s
        ) as client,
        client.stream(method, url, headers=headers, json=json_body, content=content) as response,
    ):
        hop = _Hop(response.status_code, response.headers)
        if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
            return hop  # the body of a redirect is not needed
        hop.body = _BoundedBody(max_bytes, response.headers.get("content-encoding", ""))
        async for chunk in response.aiter_raw():
            if not hop.body.feed(chunk):
                break
        return hop


def _request_headers(headers: Mapping[str, str] | None) -> httpx.Headers:
    result = httpx.Headers(headers or {})
    if "host" in result:
        # The Host header must match the vetted URL, or the allow-list is moot on shared IPs.
        raise RequestRefused("The Host header may not be set.")
    result.setdefault("user-agent", USER_AGENT)
    # Ask for an uncompressed body; _BoundedBody still copes if the server compresses.
    result["accept-encoding"] = "identity"
    return result


def _after_redirect(status: int, method: str, json_body: Any) -> tuple[str, Any]:
    """The method and body of the next hop, as browsers (and httpx) do it."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", None
    return method, json_body


def _redirect_target(current: httpx.URL, location: str, allowed_hosts: Sequence[str]) -> httpx.URL:
    try:
        joined = current.join(location)
    except (httpx.InvalidURL, ValueError):
        raise RequestRefused(f"Redirect to an invalid URL: {location[:200]!r}.") from None
    return check_url(joined, allowed_hosts)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, _ascii_host(url), url.port


async def safe_request(
    method: str,
    url: str,
    *,
    allowed_hosts: Sequence[str],
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    timeout_s: float,
    max_bytes: int,
    max_redirects: int = 3,
    sensitive_headers: Collection[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    content: bytes | None = None,
    private_networks_setting: str = DEFAULT_PRIVATE_NETWORKS_SETTING,
    follow_redirects: bool = True,
) -> SafeResponse:
    """Send one HTTP request under the outbound policy described above.

    ``sensitive_headers`` (besides Authorization, Proxy-Authorization and Cookie) are
    dropped when a redirect leaves the original origin. ``ssl_context`` overrides the CA
    bundle (tests with a private CA). ``content`` sends raw bytes instead of ``json`` (a
    signed webhook body must go out byte for byte). ``private_networks_setting`` names the
    setting whose CIDRs are allowed although private. With ``follow_redirects`` off a
    redirect is returned as the response (with an empty body) instead. Raises
    ``RequestRefused`` when the policy says no, ``RequestFailed`` when the request could not
    be completed.
    """
    method = method.upper()
    current = check_url(url, allowed_hosts)
    request_headers = _request_headers(headers)
    strip = ALWAYS_SENSITIVE_HEADERS | {h.lower() for h in sensitive_headers}
    context = ssl_context or _default_ssl_context()
    visited: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(max_redirects + 1):
                hop = await _send(
                    method,
                    current,
                    request_headers,
                    json,
                    timeout_s=timeout_s,
                    max_bytes=max_bytes,
                    ssl_context=context,
                    content=content,
                    private_networks_setting=private_networks_setting,
                )
                log.info(
                    "http_tool_request",
                    method=method,
                    url=_log_url(current),
                    status=hop.status_code,
                    hop=len(visited),
                )
                if hop.body is not None or not follow_redirects:
                    return SafeResponse(
                        status_code=hop.status_code,
                        url=str(current),
                        headers=hop.headers,
                        content=bytes(hop.body.data) if hop.body else b"",
                        truncated=hop.body.truncated if hop.body else False,
                        redirects=tuple(visited),
                    )
                target = _redirect_target(current, hop.headers["location"], allowed_hosts)
                if current.scheme == "https" and target.scheme == "http":
                    raise RequestRefused("Redirect from https to http refused.")
                if _origin(target) != _origin(current):
                    for name in strip:
                        request_headers.pop(name, None)
                method, json = _after_redirect(hop.status_code, method, json)
                visited.append(str(current))
                current = target
    except TimeoutError:
        raise RequestFailed(f"The request timed out after {timeout_s:g} s.") from None
    except httpx.TimeoutException:
        raise RequestFailed(f"The request timed out after {timeout_s:g} s.") from None
    except httpx.HTTPError as exc:
        raise RequestFailed(f"The request failed: {type(exc).__name__}: {exc}"[:300]) from None
    raise RequestFailed(f"Too many redirects (more than {max_redirects}).")
