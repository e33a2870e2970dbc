from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

import core.converters  # noqa: F401  (registers <id:...>)
from agents import api as agents_api
from agents import api_agents, api_providers, api_threads, api_tokens, api_usage
from agents import sse as agents_sse
from core import views as core_views
from monitoring import views as monitoring_views

# The API root lists these (name -> URL name).
API_RESOURCES = {
    "agents": "agent-list",
    "providers": "provider-list",
    "runs": "run-list",
    "threads": "thread-list",
    "usage": "usage",
    "tokens": "token-list",
    "moderation_flags": "moderation-flag-list",
    "moderation_check": "moderation-check",
    "moderation_policies": "moderation-policy-list",
    "secrets": "secret-list",
}

api_v1 = [
    path("", core_views.ApiRootView.as_view(resources=API_RESOURCES), name="api-root"),
    path("usage/", api_usage.UsageView.as_view(), name="usage"),
    path("tokens/", api_tokens.TokenListView.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", api_tokens.TokenDetailView.as_view(), name="token-detail"),
    path("agents/", api_agents.AgentListView.as_view(), name="agent-list"),
    path("agents/<slug:slug>/", api_agents.AgentDetailView.as_view(), name="agent-detail"),
    path(
        "agents/<slug:slug>/versions/",
        api_agents.AgentVersionListView.as_view(),
        name="agent-version-list",
    ),
    path(
        "agents/<slug:slug>/versions/<id:number>/",
        api_agents.AgentVersionDetailView.as_view(),
        name="agent-version-detail",
    ),
    path(
        "agents/<slug:slug>/versions/<id:number>/restore/",
        api_agents.AgentVersionRestoreView.as_view(),
        name="agent-version-restore",
    ),
    path("providers/", api_providers.ProviderListView.as_view(), name="provider-list"),
    path(
        "providers/<str:name>/", api_providers.ProviderDetailView.as_view(), name="provider-detail"
    ),
    path(
        "providers/<str:name>/check/",
        api_providers.ProviderCheckView.as_view(),
        name="provider-check",
    ),
    path("agents/<slug:slug>/runs/", agents_api.AgentRunCreateView.as_view(), name="agent-runs"),
    path(
        "agents/<slug:slug>/runs/batch/",
        agents_api.AgentRunBatchCreateView.as_view(),
        name="agent-runs-batch",
    ),
    path("runs/", agents_api.RunListView.as_view(), name="run-list"),
    path("threads/", api_threads.ThreadListCreateView.as_view(), name="thread-list"),
    path("threads/<str:thread_id>/", api_threads.ThreadDetailView.as_view(), name="thread-detail"),
    path(
        "threads/<str:thread_id>/messages/",
        api_threads.ThreadMessagesView.as_view(),
        name="thread-messages",
    ),
    path("runs/<str:run_id>/", agents_api.RunDetailView.as_view(), name="run-detail"),
    path("runs/<str:run_id>/events/", agents_api.RunEventsView.as_view(), name="run-events"),
    path("runs/<str:run_id>/cancel/", agents_api.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<str:run_id>/stream/", agents_sse.run_stream, name="run-stream"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/v1/moderation/", include("moderation.urls")),
    path("api/v1/secrets/", include("secrets_vault.urls")),
    path("api/v1/webhooks/", include("webhooks.urls")),
    path("v1/", include("openai_api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("livez", monitoring_views.livez, name="livez"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="prometheus-django-metrics"),
]

# DEBUG only (a no-op otherwise): daphne serves no static files by itself, and the
# admin's live run view needs its script. Production serves collectstatic's output.
urlpatterns += staticfiles_urlpatterns()

# Last: anything else under the API prefixes is a JSON 404, also with DEBUG on.
urlpatterns += [re_path(r"^(api|v1)/", core_views.api_not_found)]

handler404 = "monitoring.views.not_found"
handler500 = "monitoring.views.server_error"
