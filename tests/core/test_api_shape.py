"""What every endpoint shares: one error shape (DEBUG on too), the API root, the docs."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def assert_error_shape(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.mark.parametrize("path", ["/api/nope", "/api/v1/nope/", "/api/v1/runs/x/y/z/"])
@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_path_is_a_json_404_with_debug_on_or_off(
    alice_api: APIClient, path: str, debug: bool
) -> None:
    with override_settings(DEBUG=debug):
        for method in ("get", "post", "delete"):
            assert_error_shape(getattr(alice_api, method)(path), 404, "not_found")


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_openai_path_is_a_404_in_openais_error_shape(
    alice_api: APIClient, debug: bool
) -> None:
    # /v1/ speaks OpenAI's error shape, so that the SDKs raise their own exceptions.
    with override_settings(DEBUG=debug):
        for method in ("get", "post", "delete"):
            response = getattr(alice_api, method)("/v1/nope")
            assert response.status_code == 404
            assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_an_unknown_method_is_a_405_in_the_error_shape(alice_api: APIClient) -> None:
    with override_settings(DEBUG=True):
        assert_error_shape(alice_api.delete("/api/v1/usage/"), 405, "method_not_allowed")


def test_an_exception_in_an_api_view_is_a_json_500_with_debug_on(
    alice_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(**kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("agents.api_usage.usage_summarize", boom)
    alice_api.raise_request_exception = False
    with override_settings(DEBUG=True):
        response = alice_api.get("/api/v1/usage/")
    assert_error_shape(response, 500, "internal_error")
    assert b"boom" not in response.content


def test_a_csrf_failure_under_the_api_is_in_the_error_shape(alice: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/api/v1/threads/", {"agent": "x"}, content_type="application/json")
    assert_error_shape(response, 403, "permission_denied")


def test_the_api_root_lists_the_resources() -> None:
    body = APIClient().get("/api/v1/").json()
    assert body["resources"]["usage"] == "/api/v1/usage/"
    assert body["resources"]["runs"] == "/api/v1/runs/"
    assert body["schema"] == "/api/schema/"
    assert body["docs"] == {"swagger": "/api/docs/", "redoc": "/api/redoc/"}


def test_the_site_root_sends_a_browser_to_the_admin() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_load_their_assets_from_our_static_files(path: str) -> None:
    html = Client().get(path).content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html


def test_the_run_stream_answers_other_methods_with_405_and_allow(alice_api: APIClient) -> None:
    response = alice_api.generic(
        "TRACE", "/api/v1/runs/00000000-0000-0000-0000-000000000000/stream/"
    )
    assert_error_shape(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"
