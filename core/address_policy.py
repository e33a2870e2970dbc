"""Which destinations an outbound request may reach: IP classification (private, metadata,
embedded IPv4), the operator's private-network allow-list, host allow-lists. Pure: no I/O;
``core.safe_http`` applies it to every hop."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Cloud metadata endpoints: refused even inside HTTP_TOOL_ALLOW_PRIVATE_NETWORKS, because
# they hand out the host's credentials, which no tool call should ever read.
METADATA_HOSTNAMES = frozenset({"metadata.google.internal"})


METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)


CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")


NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any: those
    reach the IPv4 host, so they are judged as that host."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify_ip(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address (a short reason), or None when it is."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return classify_ip(inner)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    # Order matters only for the wording: the specific reasons before "private".
    checks: tuple[tuple[str, bool], ...] = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("carrier-grade NAT", ip in CARRIER_GRADE_NAT),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        # is_global also covers the special-purpose ranges the checks above do not name.
        ("non-global", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


DEFAULT_PRIVATE_NETWORKS_SETTING = "HTTP_TOOL_ALLOW_PRIVATE_NETWORKS"


def allowed_private_networks(setting: str = DEFAULT_PRIVATE_NETWORKS_SETTING) -> list[IPNetwork]:
    """The CIDRs an on-prem deployment lets this kind of caller reach although they are
    private: ``HTTP_TOOL_ALLOW_PRIVATE_NETWORKS`` for tools, ``WEBHOOK_ALLOW_PRIVATE_NETWORKS``
    for webhooks (``setting`` names which)."""
    raw = getattr(settings, setting, None) or []
    try:
        return [ipaddress.ip_network(str(cidr).strip(), strict=False) for cidr in raw]
    except ValueError as exc:
        # A configuration mistake must not open anything; refuse and say why (as the
        # client's own refusal; imported here because the client imports this module).
        from core.safe_http import RequestRefused

        raise RequestRefused(f"{setting} is invalid: {exc}.") from None


def address_refusal(ip: IPAddress, setting: str = DEFAULT_PRIVATE_NETWORKS_SETTING) -> str | None:
    """Why a connection to ``ip`` is refused under the current settings, or None."""
    reason = classify_ip(ip)
    if reason is None:
        return None
    if reason == "cloud metadata":
        return reason
    candidates = [ip, _embedded_ipv4(ip)]
    for network in allowed_private_networks(setting):
        if any(c is not None and c.version == network.version and c in network for c in candidates):
            return None
    return reason


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(_normalise_host(host))
    except ValueError:
        return None


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    """Exact host names or IP literals, or ``*.example.com`` for any subdomain (not the
    apex). IDNs are compared in their ASCII (punycode) form."""
    name = _normalise_host(host)
    literal = _ip_literal(name)
    for pattern in allowed_hosts:
        entry = _normalise_host(pattern)
        if entry.startswith("*."):
            suffix = entry[1:]
            if literal is None and name.endswith(suffix) and len(name) > len(suffix):
                return True
        elif literal is not None:
            if literal == _ip_literal(entry):
                return True
        elif name == entry:
            return True
    return False
