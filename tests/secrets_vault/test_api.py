"""REST API under /api/v1/secrets/: model permissions, value write-only, one error shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from secrets_vault.models import Secret, SecretVersion
from secrets_vault.reveal_services import secret_reveal

pytestmark = pytest.mark.django_db

URL = "/api/v1/secrets/"
VALUE = "sk-api-0123456789abcdefWXYZ"


def create(api: APIClient, **body: Any) -> Any:
    return api.post(URL, {"name": "openai-key", "value": VALUE, **body}, format="json")


def test_staff_create_a_secret_and_the_response_has_no_value(bob_api: APIClient) -> None:
    # when
    response = create(bob_api, description="prod key", rotation_interval_days=30)
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert VALUE not in response.content.decode() and "value" not in body
    assert body["name"] == "openai-key" and body["current_version"] == 1
    assert body["versions"][0]["hint"] == "••••WXYZ"
    assert body["versions"][0]["created_by"] == "bob"
    assert body["rotation_due"] is False and body["rotation_due_at"] is not None
    assert secret_reveal(name="openai-key", purpose="t", actor=None).reveal() == VALUE


@pytest.mark.parametrize("persona", ["alice_api", "charlie_api"])
def test_non_staff_users_are_refused(persona: str, request: pytest.FixtureRequest) -> None:
    api = request.getfixturevalue(persona)
    assert api.get(URL).status_code == 403
    response = create(api)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Secret.objects.exists()


def test_anonymous_requests_are_refused(db: None) -> None:
    assert APIClient().get(URL).status_code == 401


def test_a_duplicate_name_is_a_409(bob_api: APIClient) -> None:
    create(bob_api)
    response = create(bob_api)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "secret_exists"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "value": VALUE, "surprise": 1},
        {"name": "x", "value": 12345},
        {"name": "x", "value": ""},
        {"name": "x"},
        {"name": "bad name", "value": VALUE},
        {"name": "x", "value": VALUE, "agents": ["no-such-agent"]},
    ],
)
def test_invalid_bodies_are_400s_that_do_not_echo_the_value(
    bob_api: APIClient, body: dict[str, Any]
) -> None:
    response = bob_api.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert VALUE not in response.content.decode()


def test_malformed_json_is_a_400(bob_api: APIClient) -> None:
    response = bob_api.post(URL, data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_list_and_detail_show_metadata(bob_api: APIClient, demo_agent: Any) -> None:
    create(bob_api, agents=["demo-assistant"])
    listed = bob_api.get(URL).json()
    assert listed["count"] == 1 and listed["results"][0]["agents"] == ["demo-assistant"]
    detail = bob_api.get(f"{URL}openai-key/").json()
    assert detail["links"]["versions"] == "/api/v1/secrets/openai-key/versions/"
    assert bob_api.get(f"{URL}nope/").json()["error"]["code"] == "not_found"


def test_adding_a_version_with_check_and_set(bob_api: APIClient) -> None:
    # given
    create(bob_api)
    # when
    ok = bob_api.post(
        f"{URL}openai-key/versions/",
        {"value": "second-value-abcdefgh", "expected_version": 1},
        format="json",
    )
    stale = bob_api.post(
        f"{URL}openai-key/versions/",
        {"value": "third-value-abcdefgh", "expected_version": 1},
        format="json",
    )
    # then
    assert ok.status_code == 201 and ok.json()["version"] == 2
    assert "second-value" not in ok.content.decode()
    assert stale.status_code == 409
    assert stale.json() == {
        "error": {
            "code": "version_conflict",
            "message": "Secret 'openai-key' is at version 2, not 1; re-read and retry.",
            "details": {"expected_version": 1, "current_version": 2},
        }
    }
    versions = bob_api.get(f"{URL}openai-key/versions/").json()
    assert [v["version"] for v in versions] == [2, 1]


def test_disable_enable_and_destroy_a_version(bob_api: APIClient) -> None:
    create(bob_api)
    base = f"{URL}openai-key/versions/1/"
    assert bob_api.post(f"{base}disable/").json()["state"] == "disabled"
    assert bob_api.post(f"{base}enable/").json()["state"] == "active"
    destroyed = bob_api.post(f"{base}destroy/").json()
    assert destroyed["state"] == "destroyed" and destroyed["hint"] == "••••"
    again = bob_api.post(f"{base}enable/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "version_unavailable"
    assert bob_api.get(base).json()["state"] == "destroyed"
    assert SecretVersion.objects.get().value_ciphertext is None
    missing = bob_api.post(f"{URL}openai-key/versions/9/disable/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_update_metadata_and_delete(bob_api: APIClient) -> None:
    create(bob_api)
    patched = bob_api.patch(
        f"{URL}openai-key/", {"show_hint": False, "description": "d"}, format="json"
    )
    assert patched.status_code == 200
    assert patched.json()["versions"][0]["hint"] == "••••"
    refused = bob_api.patch(f"{URL}openai-key/", {"value": "x"}, format="json")
    assert refused.status_code == 400
    assert bob_api.delete(f"{URL}openai-key/").status_code == 204
    assert not Secret.objects.exists()


def test_the_openapi_schema_documents_the_routes(bob_api: APIClient) -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "/api/v1/secrets/{name}/versions/" in schema["paths"]


def test_the_value_cannot_be_read_back_from_any_endpoint(
    bob_api: APIClient, make_secret: Callable
) -> None:
    make_secret(value="sk-never-readable-1234567890")
    for path in (
        URL,
        f"{URL}openai-key/",
        f"{URL}openai-key/versions/",
        f"{URL}openai-key/versions/1/",
    ):
        assert "sk-never-readable" not in bob_api.get(path).content.decode()
