"""API tokens over REST: each user manages only their own; the secret is shown once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from agents.models import ApiToken
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens/"


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_created_token_works_and_its_secret_is_shown_only_once(alice_api: APIClient) -> None:
    expires = (timezone.now() + timedelta(days=7)).isoformat()
    created = alice_api.post(TOKENS, {"name": "CI deploy", "expires_at": expires}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "CI deploy" and body["token"].startswith("sy_")
    assert body["expires_at"] is not None
    assert bearer(body["token"]).get("/api/v1/usage/").status_code == 200
    listed = alice_api.get(TOKENS).json()
    assert [t["name"] for t in listed] == ["CI deploy", ""]
    assert all("token" not in t for t in listed)
    assert [t["current"] for t in listed] == [False, True]
    assert body["token"] not in str(listed)


def test_last_used_is_recorded(alice_api: APIClient) -> None:
    secret = alice_api.post(TOKENS, {"name": "x"}, format="json").json()["token"]
    assert ApiToken.objects.get(name="x").last_used_at is None
    bearer(secret).get("/api/v1/usage/")
    assert ApiToken.objects.get(name="x").last_used_at is not None


def test_a_revoked_token_is_refused_at_once(alice_api: APIClient) -> None:
    made = alice_api.post(TOKENS, {"name": "temp"}, format="json").json()
    assert alice_api.delete(f"{TOKENS}{made['id']}/").status_code == 204
    assert bearer(made["token"]).get("/api/v1/usage/").status_code == 401
    assert not AuthToken.objects.filter(info__name="temp").exists()


@pytest.mark.parametrize("persona", ["bob", "charlie", "dave"])
def test_nobody_sees_or_revokes_anothers_tokens_not_even_a_superuser(
    alice_api: APIClient, persona: str, request: pytest.FixtureRequest
) -> None:
    made = alice_api.post(TOKENS, {"name": "mine"}, format="json").json()
    other = token_client(request.getfixturevalue(persona))
    assert [t["name"] for t in other.get(TOKENS).json()] == [""]
    response = other.delete(f"{TOKENS}{made['id']}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert bearer(made["token"]).get("/api/v1/usage/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "x", "expires_at": "soon"}, "expires_at"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ],
)
def test_a_bad_token_request_is_a_400_naming_the_field(
    alice_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = alice_api.post(TOKENS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_an_expiry_in_the_past_is_a_400(alice_api: APIClient) -> None:
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = alice_api.post(TOKENS, {"name": "x", "expires_at": past}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_expiry"


def test_tokens_need_authentication() -> None:
    assert APIClient().get(TOKENS).status_code == 401


def test_the_admin_lists_tokens_by_name_owner_and_last_use(alice_api: APIClient, bob: Any) -> None:
    alice_api.post(TOKENS, {"name": "CI deploy"}, format="json")
    client = Client()
    client.force_login(bob)
    html = client.get("/admin/knox/authtoken/").content.decode()
    assert "CI deploy" in html and "alice" in html and "never" in html
