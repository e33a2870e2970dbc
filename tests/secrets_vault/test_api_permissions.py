"""Who may use /api/v1/secrets/: Django model permissions decide, staff status does not.

bob is a superuser (holds every permission); an operator holds only what a test names;
alice and charlie hold none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from secrets_vault.models import Secret
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/secrets/"
VALUE = "sk-perm-0123456789abcdefWXYZ"


def create(api: Any, name: str = "openai-key") -> Any:
    return api.post(URL, {"name": name, "value": VALUE}, format="json")


def test_staff_status_alone_does_not_open_the_vault(make_operator: Callable[..., Any]) -> None:
    # given a staff account without any vault permission (an operator given the console)
    api = token_client(make_operator("olga"))
    # when it lists or creates secrets, then it is refused
    assert api.get(URL).status_code == 403
    assert create(api).status_code == 403
    assert not Secret.objects.exists()


def test_view_secret_lets_an_operator_read_but_not_write(
    bob_api: Any, make_operator: Callable[..., Any]
) -> None:
    # given a secret made by bob (superuser) and an operator who may only view secrets
    assert create(bob_api).status_code == 201
    api = token_client(make_operator("olga", "secrets_vault.view_secret"))
    # when / then
    assert api.get(URL).json()["count"] == 1
    assert api.get(f"{URL}openai-key/").status_code == 200
    assert api.get(f"{URL}openai-key/versions/").status_code == 200
    assert create(api, "another").status_code == 403
    assert api.patch(f"{URL}openai-key/", {"description": "x"}, format="json").status_code == 403
    rotate = api.post(f"{URL}openai-key/versions/", {"value": VALUE + "2"}, format="json")
    assert rotate.status_code == 403
    assert api.post(f"{URL}openai-key/versions/1/disable/").status_code == 403
    assert api.delete(f"{URL}openai-key/").status_code == 403
    assert Secret.objects.get().current_version == 1


@pytest.mark.parametrize(
    ("perms", "allowed"),
    [
        (("secrets_vault.view_secret", "secrets_vault.add_secret"), {"create"}),
        (("secrets_vault.view_secret", "secrets_vault.change_secret"), {"rotate"}),
        (("secrets_vault.view_secret", "secrets_vault.delete_secret"), {"delete"}),
    ],
)
def test_each_write_needs_its_own_permission(
    bob_api: Any, make_operator: Callable[..., Any], perms: tuple[str, ...], allowed: set[str]
) -> None:
    # given a secret and an operator holding view plus one write permission
    create(bob_api)
    api = token_client(make_operator("olga", *perms))
    # when it tries every write
    done = {
        "create": create(api, "another").status_code == 201,
        "rotate": api.post(
            f"{URL}openai-key/versions/", {"value": VALUE + "2"}, format="json"
        ).status_code
        == 201,
        "delete": api.delete(f"{URL}openai-key/").status_code == 204,
    }
    # then exactly the one it holds succeeds
    assert {name for name, ok in done.items() if ok} == allowed


@pytest.mark.parametrize("persona", ["alice_api", "charlie_api"])
def test_users_without_permissions_are_refused(
    persona: str, request: pytest.FixtureRequest
) -> None:
    api = request.getfixturevalue(persona)
    assert api.get(URL).json()["error"]["code"] == "permission_denied"
