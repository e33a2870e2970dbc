"""Writes for providers and their connection check (the API and the admin share them).

The API key is a vault secret referenced by name; its value is revealed only for the
check's one request (with an access event) and never appears in an answer or a log.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractBaseUser

from agents.models import Provider, ProviderKind
from core.errors import ConflictError
from core.safe_http import RequestFailed, RequestRefused, safe_request

Actor = AbstractBaseUser | None

DEFAULT_BASE_URLS: dict[str, str] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com/v1",
}
ANTHROPIC_VERSION = "2023-06-01"
CHECK_MAX_BYTES = 256 * 1024
CHECK_MAX_TIMEOUT_S = 15.0
ERROR_MESSAGE_MAX_CHARS = 500
EDITABLE_FIELDS = (
    "name",
    "kind",
    "base_url",
    "api_key",
    "timeout_s",
    "max_retries",
    "extra_headers",
)


def provider_save(*, provider: Provider, data: dict[str, Any] | None = None) -> Provider:
    """Validate (the model's own validation, as in the admin) and save a provider."""
    for field, value in (data or {}).items():
        if field not in EDITABLE_FIELDS:
            raise ValueError(f"not an editable provider field: {field}")
        setattr(provider, field, value)
    provider.full_clean()
    provider.save()
    return provider


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider no agent uses; one in use is a conflict naming the agents."""
    slugs = list(provider.agents.order_by("slug").values_list("slug", flat=True)[:20])
    if slugs:
        raise ConflictError(
            "provider_in_use",
            f"Provider '{provider.name}' is used by agents: {', '.join(slugs)}.",
            details={"agents": slugs},
        )
    provider.delete()


def _models_url(provider: Provider) -> str:
    base = provider.base_url or DEFAULT_BASE_URLS.get(provider.kind, "")
    base = base.rstrip("/")
    if provider.kind == ProviderKind.ANTHROPIC and not base.endswith("/v1"):
        base += "/v1"  # Anthropic's base URL is the server root
    return f"{base}/models"


def _error_message(body: bytes, key: str) -> str:
    """The provider's own error message (OpenAI and Anthropic put it in error.message)."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    if key:
        text = text.replace(key, "[redacted]")  # some providers echo the key back
    return text[:ERROR_MESSAGE_MAX_CHARS]


def provider_check(*, provider: Provider, actor: Actor = None) -> dict[str, Any]:
    """One cheap authenticated request (list the models) through the SSRF-safe client.

    Returns ``{"ok": True, "latency_ms": ...}`` or ``{"ok": False, "latency_ms", "error":
    {"code", "message", "status"}}`` with the provider's message; never the key.
    """
    if provider.kind == ProviderKind.DEMO:
        return {"ok": True, "latency_ms": 0.0, "status": None}
    key = ""
    if provider.api_key is not None:
        from secrets_vault.reveal_services import secret_reveal

        key = secret_reveal(
            name=provider.api_key.name,
            purpose=f"provider check: {provider.name}"[:100],
            actor=actor,
        ).reveal()
    headers = dict(provider.extra_headers or {})
    if provider.kind == ProviderKind.ANTHROPIC:
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if key:
            headers["x-api-key"] = key
    elif key:
        headers["Authorization"] = f"Bearer {key}"
    url = _models_url(provider)
    started = time.monotonic()
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError):
        return _failure(started, "refused", f"Not a valid URL: {url[:200]!r}.", None)
    try:
        response = async_to_sync(safe_request)(
            "GET",
            url,
            allowed_hosts=[host],
            headers=headers,
            timeout_s=min(float(provider.timeout_s), CHECK_MAX_TIMEOUT_S),
            max_bytes=CHECK_MAX_BYTES,
            max_redirects=0,
            sensitive_headers=["x-api-key"],
            private_networks_setting="PROVIDER_CHECK_ALLOW_PRIVATE_NETWORKS",
        )
    except (RequestRefused, RequestFailed) as exc:
        code = "refused" if isinstance(exc, RequestRefused) else "unreachable"
        message = str(exc).replace(key, "[redacted]") if key else str(exc)
        return _failure(started, code, message[:ERROR_MESSAGE_MAX_CHARS], None)
    if 200 <= response.status_code < 300:
        return {"ok": True, "latency_ms": _ms(started), "status": response.status_code}
    code = "authentication_failed" if response.status_code in (401, 403) else "provider_error"
    return _failure(started, code, _error_message(response.content, key), response.status_code)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _failure(started: float, code: str, message: str, status: int | None) -> dict[str, Any]:
    return {
        "ok": False,
        "latency_ms": _ms(started),
        "status": status,
        "error": {"code": code, "message": message},
    }
