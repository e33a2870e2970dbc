"""Routes under /api/v1/secrets/ (included by config.urls)."""

from __future__ import annotations

from django.urls import path

import core.converters  # noqa: F401  (registers <id:...>)
from secrets_vault import api

urlpatterns = [
    path("", api.SecretListView.as_view(), name="secret-list"),
    path("<str:name>/", api.SecretDetailView.as_view(), name="secret-detail"),
    path("<str:name>/versions/", api.SecretVersionListView.as_view(), name="secret-versions"),
    path(
        "<str:name>/versions/<id:version>/",
        api.SecretVersionDetailView.as_view(),
        name="secret-version-detail",
    ),
    path(
        "<str:name>/versions/<id:version>/disable/",
        api.SecretVersionDisableView.as_view(),
        name="secret-version-disable",
    ),
    path(
        "<str:name>/versions/<id:version>/enable/",
        api.SecretVersionEnableView.as_view(),
        name="secret-version-enable",
    ),
    path(
        "<str:name>/versions/<id:version>/destroy/",
        api.SecretVersionDestroyView.as_view(),
        name="secret-version-destroy",
    ),
]
