"""What the OpenAPI schema says about moderation beyond what drf-spectacular sees."""

from __future__ import annotations

from typing import Any


def require_policy_or_rules(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOK: a dry-run check takes exactly one of ``policy`` and ``rules``;
    the serializer checks it in ``validate()``, where drf-spectacular cannot see it."""
    check = result.get("components", {}).get("schemas", {}).get("CheckRequest")
    if check is not None:
        check["oneOf"] = [{"required": ["policy"]}, {"required": ["rules"]}]
    return result
