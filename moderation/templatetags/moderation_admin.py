"""Template tags for the admin: the open-flag counts on the index page."""

from __future__ import annotations

from typing import Any

from django import template

from moderation.selectors import flag_open_count

register = template.Library()


@register.inclusion_tag("admin/moderation/open_flags.html", takes_context=True)
def moderation_open_flags(context: Any) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    allowed = user is not None and user.has_perm("moderation.view_flag")
    return {"allowed": allowed, "counts": flag_open_count() if allowed else None}
