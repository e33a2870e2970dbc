"""Authentication: hashed bearer tokens (django-rest-knox) for the API and WebSockets,
the session cookie for the admin and browser pages."""

from __future__ import annotations

import binascii
from hmac import compare_digest
from typing import Any
from urllib.parse import urlparse

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from django.utils import timezone
from django.utils.translation import gettext as _
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import get_token_model
from knox.settings import CONSTANTS
from knox.signals import token_expired
from rest_framework import exceptions


class BearerTokenAuthentication(TokenAuthentication):
    """``Authorization: Bearer <token>``; tokens are stored as SHA-512 digests by knox.

    knox also takes its header prefix from ``authenticate_header``, so that stays "Bearer"
    (settings.REST_KNOX["AUTH_HEADER_PREFIX"]).
    """

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Any]:
        """knox's lookup by token key, with the token's ``ApiToken`` in the same query;
        its last use is written at most once a minute (``TOKEN_TOUCH_EVERY``)."""
        from agents.token_services import TOKEN_TOUCH_EVERY, api_token_touch

        text = token.decode("utf-8")
        candidates = get_token_model().objects.filter(token_key=text[: CONSTANTS.TOKEN_KEY_LENGTH])
        for auth_token in candidates.select_related("user", "info"):
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(text)
            except (TypeError, binascii.Error):
                raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
            if compare_digest(digest, auth_token.digest):
                info = getattr(auth_token, "info", None)
                now = timezone.now()
                if info is not None and (
                    info.last_used_at is None or info.last_used_at < now - TOKEN_TOUCH_EVERY
                ):
                    api_token_touch(digest=auth_token.digest)
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(_("Invalid token."))

    def _cleanup_token(self, auth_token: Any) -> bool:
        """Whether the presented token has expired (it is deleted then).

        knox also loads every other token of the user on each request to delete the
        expired ones: a query, and work growing with the user's token count, on every
        API call. That sweep runs periodically instead (``tokens_purge_expired``).
        """
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=self.__class__, username=username, source="auth_token")
        return True


def bearer_credentials(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value ("" when it names
    none), or None for any other scheme."""
    scheme, sep, token = authorization.partition(" ")
    return token.strip() if sep and scheme.lower() == "bearer" else None


@database_sync_to_async
def user_for_token(token: str) -> Any:
    try:
        user, _ = BearerTokenAuthentication().authenticate_credentials(token.encode())
    except exceptions.AuthenticationFailed:
        return AnonymousUser()
    return user


def origin_allowed(origin: str) -> bool:
    """An Origin matches ALLOWED_HOSTS (by host) or CSRF_TRUSTED_ORIGINS (exactly)."""
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parsed = urlparse(origin)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return False
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    return validate_host(host, settings.ALLOWED_HOSTS)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


class WebSocketAuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` and ``scope["auth_error"]`` for the WebSocket consumers.

    A browser always sends Origin, so a present Origin must be one of ours (that stops
    cross-site WebSocket hijacking with the session cookie). Without an Origin only the
    bearer header is accepted: a cookie alone proves nothing then.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope["user"] = AnonymousUser()
        scope["auth_error"] = None
        origin = _header(scope, b"origin")
        token = bearer_credentials(_header(scope, b"authorization") or "")
        if origin is not None and not origin_allowed(origin):
            scope["auth_error"] = "origin"
        elif token is not None:
            scope["user"] = await user_for_token(token)
        elif origin is not None:
            scope["user"] = await get_user(scope)
        return await super().__call__(scope, receive, send)
