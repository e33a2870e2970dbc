"""Providers over the REST API: the key as a vault secret name, the connection check
against the local fake provider through the SSRF-safe client, permissions per persona."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.agents.test_api import assert_error
from tests.fakes.provider_server import FakeProviderServer, Scenario

pytestmark = pytest.mark.django_db

PROVIDERS = "/api/v1/providers/"
KEY_VALUE = "sk-test-provider-key-0123456789"


@pytest.fixture
def openai_key(db: None) -> Any:
    from secrets_vault.services import secret_create

    return secret_create(name="openai-key", value=KEY_VALUE)


@pytest.fixture
def loopback_allowed(settings: Any) -> None:
    settings.PROVIDER_CHECK_ALLOW_PRIVATE_NETWORKS = ["127.0.0.0/8"]


def local(fake_provider: FakeProviderServer, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "local",
        "kind": "openai",
        "base_url": fake_provider.base_url,
        "api_key_secret": "openai-key",
        "timeout_s": 10,
    }
    return {**body, **overrides}


def test_dave_creates_a_provider_whose_key_is_a_secret_name(
    dave_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer
) -> None:
    response = dave_api.post(PROVIDERS, local(fake_provider), format="json")
    assert response.status_code == 201, response.content
    provider = response.json()
    assert provider["api_key_secret"] == "openai-key"
    assert KEY_VALUE not in response.content.decode()
    listed = dave_api.get(PROVIDERS).json()["results"]
    assert [p["name"] for p in listed] == ["local"]
    assert KEY_VALUE not in dave_api.get(f"{PROVIDERS}local/").content.decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_key_secret", "no-such-secret"),
        ("kind", "gemini"),
        ("base_url", "not a url"),
        ("timeout_s", 0),
        ("extra_headers", {"X-Team": 5}),
        ("api_key", KEY_VALUE),
    ],
)
def test_an_invalid_field_is_a_400_naming_it(
    bob_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer, field: str, value: Any
) -> None:
    response = bob_api.post(PROVIDERS, local(fake_provider, **{field: value}), format="json")
    error = assert_error(response, 400, "invalid_request")
    assert field in error["details"]
    assert KEY_VALUE not in response.content.decode()


def test_patch_changes_a_provider(
    bob_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer
) -> None:
    bob_api.post(PROVIDERS, local(fake_provider), format="json")
    response = bob_api.patch(f"{PROVIDERS}local/", {"api_key_secret": None}, format="json")
    assert response.status_code == 200
    assert response.json()["api_key_secret"] is None


def test_the_check_lists_models_with_the_key_and_never_returns_it(
    bob_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer, loopback_allowed: None
) -> None:
    # given a provider pointing at the local OpenAI-compatible server
    bob_api.post(PROVIDERS, local(fake_provider), format="json")
    # when its connection is checked
    response = bob_api.post(f"{PROVIDERS}local/check/")
    # then one authenticated GET /v1/models was made and the answer is ok, without the key
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["ok"] is True
    assert result["status"] == 200
    assert result["latency_ms"] >= 0
    assert KEY_VALUE not in response.content.decode()
    [request] = fake_provider.requests
    assert (request["method"], request["path"]) == ("GET", "/v1/models")
    assert request["headers"]["authorization"] == f"Bearer {KEY_VALUE}"
    # and the reveal left an access event
    from secrets_vault.models import SecretAccessEvent

    assert SecretAccessEvent.objects.filter(purpose__startswith="provider check").count() == 1


def test_the_check_returns_the_providers_error(
    bob_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer, loopback_allowed: None
) -> None:
    body = local(fake_provider, base_url=f"{fake_provider.root_url}/nowhere")
    bob_api.post(PROVIDERS, body, format="json")
    result = bob_api.post(f"{PROVIDERS}local/check/").json()
    assert result["ok"] is False
    assert result["status"] == 404
    assert result["error"] == {"code": "provider_error", "message": "no route /nowhere/models"}


def test_a_401_is_the_providers_message_with_the_key_redacted(
    bob_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer, loopback_allowed: None
) -> None:
    # given a provider that refuses the key and echoes it back, as OpenAI does
    echo = {"error": {"message": f"Incorrect API key provided: {KEY_VALUE}.", "type": "x"}}
    fake_provider.script(Scenario(kind="status", status=401, error_body=echo, endpoint="models"))
    bob_api.post(PROVIDERS, local(fake_provider), format="json")
    # when its connection is checked
    response = bob_api.post(f"{PROVIDERS}local/check/")
    # then the answer is the provider's error, without the key
    assert response.status_code == 200
    assert response.json()["error"] == {
        "code": "authentication_failed",
        "message": "Incorrect API key provided: [redacted].",
    }
    assert KEY_VALUE not in response.content.decode()


def test_the_check_refuses_loopback_unless_allowed(
    bob_api: APIClient, openai_key: Any, fake_provider: FakeProviderServer
) -> None:
    bob_api.post(PROVIDERS, local(fake_provider), format="json")
    result = bob_api.post(f"{PROVIDERS}local/check/").json()
    assert result["ok"] is False
    assert result["error"]["code"] == "refused"
    assert fake_provider.requests == []


def test_the_demo_provider_checks_ok_without_a_request(
    bob_api: APIClient, demo_provider: Any
) -> None:
    assert bob_api.post(f"{PROVIDERS}demo/check/").json()["ok"] is True


def test_a_provider_in_use_cannot_be_deleted(bob_api: APIClient, demo_agent: Any) -> None:
    error = assert_error(bob_api.delete(f"{PROVIDERS}demo/"), 409, "provider_in_use")
    assert error["details"] == {"agents": ["demo-assistant"]}
    demo_agent.delete()
    assert bob_api.delete(f"{PROVIDERS}demo/").status_code == 204
    assert_error(bob_api.get(f"{PROVIDERS}demo/"), 404, "provider_not_found")


def test_dave_holds_the_provider_permissions_of_the_agents_app(
    dave_api: APIClient, demo_provider: Any
) -> None:
    assert dave_api.get(f"{PROVIDERS}demo/").status_code == 200
    assert dave_api.patch(f"{PROVIDERS}demo/", {"timeout_s": 5}, format="json").status_code == 200
    assert dave_api.post(f"{PROVIDERS}demo/check/").status_code == 200


@pytest.mark.parametrize("persona", ["alice_api", "charlie_api"])
def test_users_without_provider_permissions_are_refused(
    request: pytest.FixtureRequest, persona: str, demo_provider: Any
) -> None:
    client: APIClient = request.getfixturevalue(persona)
    assert_error(client.get(PROVIDERS), 403, "permission_denied")
    assert_error(client.get(f"{PROVIDERS}demo/"), 403, "permission_denied")
    body = {"name": "x", "kind": "demo"}
    assert_error(client.post(PROVIDERS, body, format="json"), 403, "permission_denied")
    response = client.patch(f"{PROVIDERS}demo/", {"timeout_s": 5}, format="json")
    assert_error(response, 403, "permission_denied")
    assert_error(client.delete(f"{PROVIDERS}demo/"), 403, "permission_denied")
    assert_error(client.post(f"{PROVIDERS}demo/check/"), 403, "permission_denied")


def test_a_viewer_may_read_but_not_check(make_operator: Any, demo_provider: Any) -> None:
    from tests.conftest import token_client

    client = token_client(make_operator("erin", "agents.view_provider"))
    assert client.get(PROVIDERS).status_code == 200
    assert_error(client.post(f"{PROVIDERS}demo/check/"), 403, "permission_denied")


def test_the_admin_check_button_reports_the_outcome(
    client: Any,
    bob: Any,
    openai_key: Any,
    fake_provider: FakeProviderServer,
    loopback_allowed: None,
) -> None:
    from agents.models import Provider

    provider = Provider.objects.create(
        name="local", kind="openai", base_url=fake_provider.base_url, api_key=openai_key
    )
    client.force_login(bob)
    url = f"/admin/agents/provider/{provider.pk}/check-connection/"
    response = client.get(url, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "local: connected in" in text
    assert KEY_VALUE not in text
    assert [r["path"] for r in fake_provider.requests] == ["/v1/models"]
