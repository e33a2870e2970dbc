"""/metrics is for scrapers on allowed networks, or with the metrics token."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from monitoring.access import parse_networks

pytestmark = pytest.mark.django_db


def get(remote_addr: str, **headers: str) -> Any:
    return Client(REMOTE_ADDR=remote_addr, headers=headers).get("/metrics")


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.2.3.4", "192.168.1.9", "::ffff:10.0.0.7"]
)
def test_loopback_and_private_networks_may_scrape_by_default(address: str) -> None:
    response = get(address)
    assert response.status_code == 200
    assert b"switchyard_runs_in_status" in response.content


@pytest.mark.parametrize("address", ["203.0.113.5", "2001:db8::1", "::ffff:8.8.8.8", "bogus"])
def test_other_clients_are_refused_without_a_byte_of_metrics(address: str) -> None:
    response = get(address)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert b"switchyard_" not in response.content


def test_the_allowed_networks_are_configurable(settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert get("203.0.113.5").status_code == 200
    assert get("127.0.0.1").status_code == 403


def test_with_a_token_set_only_its_bearer_may_scrape_from_anywhere(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-me-7c1e"
    refused = get("127.0.0.1")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert get("127.0.0.1", authorization="Bearer wrong").status_code == 401
    assert get("127.0.0.1", authorization="Basic scrape-me-7c1e").status_code == 401
    assert get("203.0.113.5", authorization="Bearer scrape-me-7c1e").status_code == 200


def test_a_malformed_network_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ImproperlyConfigured, match="'10.0.0.0/33'"):
        parse_networks(("127.0.0.0/8", "10.0.0.0/33"))
