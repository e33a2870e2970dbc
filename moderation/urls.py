"""Included at ``api/v1/moderation/``."""

from __future__ import annotations

from django.urls import path

import core.converters  # noqa: F401  (registers <id:...>)
from moderation import api

urlpatterns = [
    path("flags/", api.FlagListView.as_view(), name="moderation-flag-list"),
    path(
        "flags/<id:flag_id>/resolve/",
        api.FlagResolveView.as_view(),
        name="moderation-flag-resolve",
    ),
    path("check/", api.CheckView.as_view(), name="moderation-check"),
    path("policies/", api.PolicyListView.as_view(), name="moderation-policy-list"),
    path(
        "policies/<str:name>/",
        api.PolicyDetailView.as_view(),
        name="moderation-policy-detail",
    ),
]
