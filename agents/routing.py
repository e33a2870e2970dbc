from __future__ import annotations

from django.urls import path

from agents.consumers import RunStreamConsumer

websocket_urlpatterns = [
    path("ws/runs/<str:run_id>/", RunStreamConsumer.as_asgi()),
]
