"""API tokens honour API_TOKEN_TTL_HOURS (issue 11, finding 2): once expired, refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from agents.token_services import api_token_create

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_new_token_expires_after_the_configured_ttl(settings: Any, alice: Any) -> None:
    # given a 2-hour token lifetime
    settings.API_TOKEN_TTL_HOURS = 2
    # when a token is made
    token = api_token_create(user=alice)
    # then it expires in two hours, works until then and is refused after
    row = AuthToken.objects.get(user=alice)
    assert row.expiry is not None
    assert abs(row.expiry - (timezone.now() + timedelta(hours=2))) < timedelta(minutes=1)
    assert bearer(token).get("/api/v1/agents/").status_code == 200
    AuthToken.objects.filter(pk=row.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert bearer(token).get("/api/v1/agents/").status_code == 401


def test_a_ttl_of_zero_makes_tokens_that_do_not_expire(settings: Any, alice: Any) -> None:
    settings.API_TOKEN_TTL_HOURS = 0
    api_token_create(user=alice)
    assert AuthToken.objects.get(user=alice).expiry is None


def test_the_token_command_honours_the_ttl_too(settings: Any, alice: Any) -> None:
    from django.core.management import call_command

    settings.API_TOKEN_TTL_HOURS = 1
    call_command("create_api_token", "alice")
    assert AuthToken.objects.get(user=alice).expiry is not None
