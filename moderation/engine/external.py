"""External moderation through the OpenAI moderation protocol.

``POST {base_url}/moderations`` with ``{"model": ..., "input": ...}``; the response is
``{"results": [{"flagged": bool, "categories": {...}, "category_scores": {...}}]}``.
Any OpenAI-compatible server works. The API key is passed per call (revealed from the vault
by the caller) and never appears in errors. The call goes through the SSRF-safe client
(``core.safe_http``), as the tools' calls do: only the rule's own host, only public
addresses unless ``MODERATION_ALLOW_PRIVATE_NETWORKS`` lists the network, never a cloud
metadata address, no redirects, a bounded body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from core.safe_http import RequestFailed, RequestRefused, safe_request

# A moderation verdict is small; a larger body is not an answer.
MAX_RESPONSE_BYTES = 1_000_000


@dataclass
class ExternalVerdict:
    """Finding kinds the external API produced, or the error that prevented a verdict."""

    kinds: list[str] = field(default_factory=list)
    error: str | None = None


def _flagged_categories(result: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Categories that count, honouring the rule's category filter and threshold."""
    wanted = params.get("categories")
    threshold = params.get("threshold")
    if threshold is not None:
        scores = result.get("category_scores") or {}
        hits = [c for c, s in scores.items() if isinstance(s, int | float) and s >= threshold]
    elif result.get("flagged"):
        hits = [c for c, v in (result.get("categories") or {}).items() if v is True]
        hits = hits or ["flagged"]
    else:
        hits = []
    if wanted is not None:
        hits = [c for c in hits if c in wanted]
    return sorted(hits)


def _parse(payload: Any) -> dict[str, Any]:
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ValueError("response has no results")
    return results[0]


def _failure(params: dict[str, Any], message: str) -> ExternalVerdict:
    # Fail-closed turns an outage into a finding; fail-open only notes the error.
    kinds = ["external_unavailable"] if params["fail_mode"] == "closed" else []
    return ExternalVerdict(kinds=kinds, error=message)


async def check_external(text: str, params: dict[str, Any], api_key: str | None) -> ExternalVerdict:
    """Ask an OpenAI-compatible moderation endpoint about ``text``.

    ``params`` are the validated rule parameters. On timeout, transport error, non-2xx
    status or malformed response the rule's ``fail_mode`` decides: ``closed`` yields an
    ``external_unavailable`` finding, ``open`` yields none; both report ``error``.
    """
    url = f"{params['base_url']}/moderations"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": params["model"], "input": text}
    try:
        response = await safe_request(
            "POST",
            url,
            allowed_hosts=[urlsplit(url).hostname or ""],
            headers=headers,
            json=body,
            timeout_s=params["timeout_s"],
            max_bytes=MAX_RESPONSE_BYTES,
            max_redirects=0,
            private_networks_setting="MODERATION_ALLOW_PRIVATE_NETWORKS",
        )
    except RequestRefused as exc:
        return _failure(params, f"moderation API refused by the outbound policy ({exc})")
    except RequestFailed as exc:
        if "timed out" in str(exc):
            return _failure(params, f"moderation API timed out after {params['timeout_s']}s")
        return _failure(params, f"moderation API unreachable ({exc})")
    if response.status_code >= 300:
        return _failure(params, f"moderation API returned HTTP {response.status_code}")
    if response.truncated:
        return _failure(params, f"moderation API sent more than {MAX_RESPONSE_BYTES} bytes")
    try:
        result = _parse(json.loads(response.content))
    except ValueError as exc:
        return _failure(params, f"moderation API sent an invalid response ({exc})")
    return ExternalVerdict(kinds=[f"external:{c}" for c in _flagged_categories(result, params)])
