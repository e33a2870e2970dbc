from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents import api as agents_api
from agents import sse as agents_sse
from monitoring import views as monitoring_views

api_v1 = [
    path("agents/", agents_api.AgentListView.as_view(), name="agent-list"),
    path("agents/<slug:slug>/runs/", agents_api.AgentRunCreateView.as_view(), name="agent-runs"),
    path("runs/", agents_api.RunListView.as_view(), name="run-list"),
    path("threads/", agents_api.ThreadCreateView.as_view(), name="thread-create"),
    path("threads/<str:thread_id>/", agents_api.ThreadDetailView.as_view(), name="thread-detail"),
    path("runs/<str:run_id>/", agents_api.RunDetailView.as_view(), name="run-detail"),
    path("runs/<str:run_id>/events/", agents_api.RunEventsView.as_view(), name="run-events"),
    path("runs/<str:run_id>/cancel/", agents_api.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<str:run_id>/stream/", agents_sse.run_stream, name="run-stream"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/v1/moderation/", include("moderation.urls")),
    path("api/v1/secrets/", include("secrets_vault.urls")),
    path("v1/", include("openai_api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("livez", monitoring_views.livez, name="livez"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="prometheus-django-metrics"),
]

# DEBUG only (a no-op otherwise): daphne serves no static files by itself, and the
# admin's live run view needs its script. Production serves collectstatic's output.
urlpatterns += staticfiles_urlpatterns()

handler404 = "monitoring.views.not_found"
handler500 = "monitoring.views.server_error"
