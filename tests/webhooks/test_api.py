"""The webhook API with the personas: alice owns, bob is a superuser, charlie an outsider."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from secrets_vault.models import Secret
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]
URL = "/api/v1/webhooks/"
HOOK = "http://127.0.0.1:9/hook"


def create(api: APIClient, **body: Any) -> Any:
    return api.post(URL, {"url": HOOK, "events": ["run.succeeded"], **body}, format="json")


def test_creating_an_endpoint_returns_its_secret_once(alice_api: APIClient) -> None:
    created = create(alice_api, description="CI")
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["run.succeeded"]
    assert body["owner"] == "alice" and body["is_active"] is True
    again = alice_api.get(f"{URL}{body['id']}/").json()
    assert "secret" not in again
    assert body["secret"] not in str(alice_api.get(URL).json())
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert Secret.objects.filter(name=endpoint.secret_name).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["run.exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "http://169.254.169.254/"}, "url"),
        ({"color": "red"}, "color"),
        ({"agent": "no-such-agent"}, "agent"),
    ],
)
def test_bad_input_is_a_clear_400_naming_the_field(
    alice_api: APIClient, body: dict, field: str
) -> None:
    response = create(alice_api, **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in str(error["details"]) or field in error["message"]
    assert not WebhookEndpoint.objects.exists()


def test_an_outsider_cannot_see_or_change_anothers_endpoint(
    alice_api: APIClient, charlie_api: APIClient
) -> None:
    endpoint = create(alice_api).json()["id"]
    assert charlie_api.get(URL).json()["results"] == []
    for call in (
        charlie_api.get(f"{URL}{endpoint}/"),
        charlie_api.patch(f"{URL}{endpoint}/", {"is_active": False}, format="json"),
        charlie_api.delete(f"{URL}{endpoint}/"),
        charlie_api.post(f"{URL}{endpoint}/test/"),
        charlie_api.post(f"{URL}{endpoint}/rotate-secret/"),
        charlie_api.get(f"{URL}{endpoint}/deliveries/"),
    ):
        assert call.status_code == 404
    assert WebhookEndpoint.objects.get(pk=endpoint).is_active is True


def test_a_superuser_sees_every_endpoint(alice_api: APIClient, bob_api: APIClient) -> None:
    endpoint = create(alice_api).json()["id"]
    assert [e["id"] for e in bob_api.get(URL).json()["results"]] == [endpoint]


def test_staff_without_permissions_sees_only_its_own(alice_api: APIClient, make_user: Any) -> None:
    from tests.conftest import token_client

    create(alice_api)
    staff = make_user("erin")
    staff.is_staff = True
    staff.save()
    assert token_client(staff).get(URL).json()["results"] == []


def test_the_owner_can_test_rotate_redeliver_pause_and_delete(alice_api: APIClient) -> None:
    body = create(alice_api).json()
    endpoint = body["id"]
    tested = alice_api.post(f"{URL}{endpoint}/test/")
    assert tested.status_code == 202 and tested.json()["event_type"] == "webhook.test"
    deliveries = alice_api.get(f"{URL}{endpoint}/deliveries/").json()["results"]
    assert len(deliveries) == 1 and deliveries[0]["webhook_id"].startswith("msg_")
    delivery_id = deliveries[0]["id"]
    redelivered = alice_api.post(f"{URL}deliveries/{delivery_id}/redeliver/")
    assert redelivered.status_code == 202
    assert redelivered.json()["webhook_id"] == deliveries[0]["webhook_id"]
    rotated = alice_api.post(f"{URL}{endpoint}/rotate-secret/").json()
    assert rotated["secret"] != body["secret"] and rotated["rotation_overlap_until"]
    paused = alice_api.patch(f"{URL}{endpoint}/", {"is_active": False}, format="json")
    assert paused.status_code == 200 and paused.json()["is_active"] is False
    secret_name = WebhookEndpoint.objects.get(pk=endpoint).secret_name
    assert alice_api.delete(f"{URL}{endpoint}/").status_code == 204
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert not Secret.objects.filter(name=secret_name).exists()


def test_malformed_ids_are_404s(alice_api: APIClient) -> None:
    assert alice_api.get(f"{URL}not-a-uuid/").status_code == 404
    assert alice_api.post(f"{URL}deliveries/nope/redeliver/").status_code == 404


def test_anonymous_callers_are_refused(client: Any) -> None:
    assert client.get(URL).status_code in (401, 403)
