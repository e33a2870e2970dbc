"""Who may read ``/metrics``.

The endpoint tells agent names, spend against budgets and traffic, and each scrape runs
a few database queries (``monitoring/collectors.py``), so it is not for the internet:
with ``METRICS_TOKEN`` set, a scraper must send it as a bearer token (Prometheus:
``authorization: {credentials: ...}``); without one, only clients on
``METRICS_ALLOWED_NETWORKS`` (loopback and private ranges by default) are served.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from agents.auth import bearer_credentials

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def parse_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"METRICS_ALLOWED_NETWORKS: {value!r} is not an IP network (e.g. 10.0.0.0/8)."
            ) from None
    return tuple(networks)


def client_in(networks: Iterable[Network], address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.1.2.3 is 10.1.2.3
    return any(ip.version == net.version and ip in net for net in networks)


def metrics_access(request: HttpRequest) -> str | None:
    """None when the request may read the metrics, else why not: "token" (a bearer
    token is required and missing or wrong) or "network" (the client is not on an
    allowed network)."""
    expected = settings.METRICS_TOKEN
    if expected:
        given = bearer_credentials(request.headers.get("Authorization", "")) or ""
        return None if hmac.compare_digest(given.encode(), expected.encode()) else "token"
    networks = parse_networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    return None if client_in(networks, request.META.get("REMOTE_ADDR", "")) else "network"
