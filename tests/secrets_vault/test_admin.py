"""The vault admin: list, add, rotate, version actions, read-only access log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from secrets_vault.models import Secret, SecretAccessEvent, SecretVersion
from secrets_vault.reveal_services import secret_reveal

pytestmark = pytest.mark.django_db

VALUE = "sk-admin-0123456789abcdefWXYZ"


@pytest.fixture
def bob_admin(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def test_the_list_shows_version_hint_and_rotation_marker(
    bob_admin: Client, make_secret: Callable
) -> None:
    # given
    make_secret(value=VALUE, rotation_interval_days=30)
    secret_reveal(name="openai-key", purpose="t", actor=None)
    # when
    html = bob_admin.get(reverse("admin:secrets_vault_secret_changelist")).content.decode()
    # then
    assert "openai-key" in html and "••••WXYZ" in html and VALUE not in html
    assert "rotation due" in html.lower() and "last accessed" in html.lower()


def test_staff_add_a_secret_through_a_password_input(bob_admin: Client) -> None:
    url = reverse("admin:secrets_vault_secret_add")
    page = bob_admin.get(url).content.decode()
    assert 'type="password" name="value"' in page
    response = bob_admin.post(
        url,
        {
            "name": "from-admin",
            "value": VALUE,
            "description": "",
            "show_hint": "on",
            "rotation_interval_days": "",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert secret_reveal(name="from-admin", purpose="t", actor=None).reveal() == VALUE
    assert SecretVersion.objects.get().created_by.username == "bob"


def test_the_change_page_edits_metadata_and_links_to_rotation(
    bob_admin: Client, make_secret: Callable
) -> None:
    secret = make_secret(value=VALUE)
    url = reverse("admin:secrets_vault_secret_change", args=[secret.pk])
    page = bob_admin.get(url).content.decode()
    assert "Rotate" in page and VALUE not in page
    response = bob_admin.post(
        url,
        {
            "description": "new description",
            "rotation_interval_days": "7",
            "versions-TOTAL_FORMS": "1",
            "versions-INITIAL_FORMS": "1",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "0",
            "versions-0-id": str(SecretVersion.objects.get().pk),
            "versions-0-secret": str(secret.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    secret.refresh_from_db()
    assert secret.description == "new description" and secret.rotation_interval_days == 7
    assert secret.show_hint is False and SecretVersion.objects.get().hint == ""


def test_rotating_from_the_admin_adds_a_version(bob_admin: Client, make_secret: Callable) -> None:
    # given
    secret = make_secret(value=VALUE)
    url = reverse("admin:secrets_vault_secret_rotate", args=[secret.pk])
    assert 'type="password"' in bob_admin.get(url).content.decode()
    # when
    response = bob_admin.post(
        url,
        {
            "value": "rotated-value-0000000000",
            "confirm": "rotated-value-0000000000",
            "expected_version": "1",
        },
    )
    # then
    assert response.status_code == 302
    assert secret_reveal(name="openai-key", purpose="t", actor=None).reveal() == (
        "rotated-value-0000000000"
    )


@pytest.mark.parametrize(
    ("confirm", "expected", "message"),
    [("something-else", "1", "The two values differ"), (None, "0", "is at version 1, not 0")],
)
def test_a_refused_rotation_re_renders_without_the_value(
    bob_admin: Client, make_secret: Callable, confirm: str | None, expected: str, message: str
) -> None:
    secret = make_secret()
    url = reverse("admin:secrets_vault_secret_rotate", args=[secret.pk])
    new = "rotated-value-0000000000"
    response = bob_admin.post(
        url, {"value": new, "confirm": confirm or new, "expected_version": expected}
    )
    html = response.content.decode()
    assert response.status_code == 200 and message in html and new not in html
    assert Secret.objects.get().current_version == 1


def test_the_rotate_action_leads_to_the_rotate_form(
    bob_admin: Client, make_secret: Callable
) -> None:
    secret = make_secret()
    response = bob_admin.post(
        reverse("admin:secrets_vault_secret_changelist"),
        {
            "action": "rotate_selected",
            ACTION_CHECKBOX_NAME: [str(secret.pk)],
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:secrets_vault_secret_rotate", args=[secret.pk])


def test_version_actions_disable_and_destroy_with_confirmation(
    bob_admin: Client, make_secret: Callable
) -> None:
    # given
    make_secret()
    row = SecretVersion.objects.get()
    url = reverse("admin:secrets_vault_secretversion_changelist")
    # when: disable
    bob_admin.post(url, {"action": "disable_versions", ACTION_CHECKBOX_NAME: [str(row.pk)]})
    assert SecretVersion.objects.get().state == "disabled"
    # when: destroy asks first
    ask = bob_admin.post(url, {"action": "destroy_versions", ACTION_CHECKBOX_NAME: [str(row.pk)]})
    assert ask.status_code == 200 and "cannot be undone" in ask.content.decode()
    assert SecretVersion.objects.get().state == "disabled"
    bob_admin.post(
        url, {"action": "destroy_versions", "confirm": "yes", ACTION_CHECKBOX_NAME: [str(row.pk)]}
    )
    # then
    assert SecretVersion.objects.get().state == "destroyed"
    assert SecretVersion.objects.get().value_ciphertext is None


def test_the_version_detail_and_access_log_are_read_only(
    bob_admin: Client, make_secret: Callable
) -> None:
    make_secret()
    secret_reveal(name="openai-key", purpose="run:abc", actor=None)
    version_url = reverse(
        "admin:secrets_vault_secretversion_change", args=[SecretVersion.objects.get().pk]
    )
    event_url = reverse(
        "admin:secrets_vault_secretaccessevent_change", args=[SecretAccessEvent.objects.get().pk]
    )
    assert bob_admin.get(version_url).status_code == 200
    assert bob_admin.post(version_url, {}).status_code == 403
    assert "run:abc" in bob_admin.get(event_url).content.decode()
    assert bob_admin.post(event_url, {}).status_code == 403
    assert bob_admin.get(reverse("admin:secrets_vault_secretaccessevent_add")).status_code == 403
    log = bob_admin.get(reverse("admin:secrets_vault_secretaccessevent_changelist"))
    assert "run:abc" in log.content.decode()


def test_deleting_from_the_admin_goes_through_the_service(
    bob_admin: Client, make_secret: Callable
) -> None:
    secret = make_secret()
    url = reverse("admin:secrets_vault_secret_delete", args=[secret.pk])
    assert bob_admin.post(url, {"post": "yes"}).status_code == 302
    assert not Secret.objects.exists()


def test_non_staff_cannot_reach_the_rotate_form(alice: Any, make_secret: Callable) -> None:
    secret = make_secret()
    client = Client()
    client.force_login(alice)
    response = client.get(reverse("admin:secrets_vault_secret_rotate", args=[secret.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
