"""API tokens: issue, touch, delete and purge (the writes behind agents.auth and the tokens API)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone

from agents.models import ApiToken
from core.errors import (
    ApplicationError,
)

TOKEN_TOUCH_EVERY = timedelta(minutes=1)


def api_token_create(*, user: AbstractBaseUser) -> str:
    """A new API token for ``user``, expiring after ``API_TOKEN_TTL_HOURS`` (0: never);
    only its digest is stored, so it is shown once."""
    hours = settings.API_TOKEN_TTL_HOURS
    expires_at = timezone.now() + timedelta(hours=hours) if hours else None
    _, token = api_token_issue(user=user, expires_at=expires_at)
    return token


@transaction.atomic
def api_token_issue(
    *, user: AbstractBaseUser, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A named token (knox's, with an ``ApiToken`` beside it) and its secret, which is not
    stored anywhere: the caller shows it once. No ``expires_at``: it does not expire."""
    from knox.models import AuthToken

    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("invalid_expiry", "expires_at must be in the future.")
    expiry = None if expires_at is None else expires_at - timezone.now()
    auth_token, secret = AuthToken.objects.create(user=user, expiry=expiry)
    return ApiToken.objects.create(token=auth_token, name=name), secret


def api_token_delete(*, token: ApiToken) -> None:
    """Revoke a token: the next request with it is a 401."""
    token.token.delete()


def api_token_touch(*, digest: str) -> None:
    """Record that a token was used, at most once a minute per token (one indexed UPDATE
    that matches nothing the rest of the time)."""
    now = timezone.now()
    ApiToken.objects.filter(token_id=digest).filter(
        models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - TOKEN_TOUCH_EVERY)
    ).update(last_used_at=now)


def tokens_purge_expired() -> int:
    """Delete expired API tokens (knox's per-request sweep, done periodically instead)."""
    from knox.models import AuthToken

    _, per_model = AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    deleted: int = per_model.get(AuthToken._meta.label, 0)  # knox is untyped
    return deleted  # not counting their ApiToken rows
