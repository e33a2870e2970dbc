"""Permissions from Django's model permissions, never from ``is_staff`` alone."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission


def has_perms(user: Any, *perms: str) -> bool:
    """True for an active user holding every one of ``perms`` (superusers hold all)."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perms(perms))


class ModelPermission(BasePermission):
    """Grants a view to users with the permissions of ``view.required_perms[method]``.

    ``required_perms`` maps an HTTP method (``"GET"``, ``"POST"``, ...; ``"*"`` for any)
    to the permission names it needs, e.g. ``{"GET": ["secrets_vault.view_secret"]}``.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        required: dict[str, list[str]] = getattr(view, "required_perms", {})
        perms = required.get(request.method, required.get("*", []))
        return has_perms(request.user, *perms)
