"""Shared fixtures: the personas of every permission test, API clients, the demo agent.

alice owns runs, bob is a superuser, charlie is an outsider; ``make_operator`` makes a
staff account holding only the model permissions a test names. Tests talk to the real database
and Redis named by DATABASE_URL and REDIS_URL (``make test`` points them at the local
PostgreSQL and Redis; ``.ci/run`` starts those when they are down).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.fakes.fixtures import fake_provider  # noqa: F401  (a fixture for every test)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_service(name: str, available: bool) -> None:
    """Outside CI a missing service skips the test (naming it); in CI it is a failure."""
    if available:
        return
    message = f"{name} is not available (set it up or run `.ci/run`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _fast_demo_model(settings: Any) -> None:
    settings.DEMO_MODEL_DELAY_MS = 0


@pytest.fixture(scope="session")
def _test_key_entry() -> str:
    from secrets_vault.keyring import generate_key_entry

    return generate_key_entry("test")


@pytest.fixture(autouse=True)
def _test_keyring(settings: Any, _test_key_entry: str) -> None:
    """A vault keyring for every test: pytest-django runs with DEBUG off, where the vault
    refuses to generate a development keyring (as production would)."""
    settings.VAULT_KEYS = _test_key_entry
    settings.VAULT_ACTIVE_KEY_ID = "test"


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str, *, staff: bool = False) -> Any:
        return django_user_model.objects.create_user(
            username=username,
            password=f"{username}-password-1",
            is_staff=staff,
            is_superuser=staff,
        )

    return make


@pytest.fixture
def make_operator(make_user: Callable[..., Any]) -> Callable[..., Any]:
    """A staff account (it may log in to the console) with only the permissions named,
    as ``app_label.codename``: staff status by itself grants nothing."""
    from django.contrib.auth.models import Permission

    def make(username: str, *perms: str) -> Any:
        user = make_user(username)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return type(user).objects.get(pk=user.pk)  # fresh: no stale permission cache

    return make


@pytest.fixture
def dave(make_user: Callable[..., Any]) -> Any:
    """An operator: in the "operators" group, which holds every permission of the agents
    app and nothing else (not the vault's, not moderation's)."""
    from django.contrib.auth.models import Group, Permission

    user = make_user("dave")
    group, _ = Group.objects.get_or_create(name="operators")
    group.permissions.set(Permission.objects.filter(content_type__app_label="agents"))
    user.groups.add(group)
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def dave_api(dave: Any) -> APIClient:
    return token_client(dave)


@pytest.fixture
def alice(make_user: Callable[..., Any]) -> Any:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., Any]) -> Any:
    return make_user("bob", staff=True)


@pytest.fixture
def charlie(make_user: Callable[..., Any]) -> Any:
    return make_user("charlie")


def token_client(user: Any) -> APIClient:
    from agents.token_services import api_token_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user)}")
    return client


@pytest.fixture
def alice_api(alice: Any) -> APIClient:
    return token_client(alice)


@pytest.fixture
def bob_api(bob: Any) -> APIClient:
    return token_client(bob)


@pytest.fixture
def charlie_api(charlie: Any) -> APIClient:
    return token_client(charlie)


@pytest.fixture
def demo_provider(db: None) -> Any:
    from agents.models import Provider, ProviderKind

    return Provider.objects.create(name="demo", kind=ProviderKind.DEMO)


@pytest.fixture
def demo_agent(demo_provider: Any) -> Any:
    from agents.models import Agent

    return Agent.objects.create(
        slug="demo-assistant",
        name="Demo assistant",
        provider=demo_provider,
        model_name="demo",
        tools=["calculator", "current_time"],
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = settings.REDIS_URL
    available = False
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            available = True
        except redis.RedisError:
            available = False
    require_service("Redis (REDIS_URL)", available)
    return url
