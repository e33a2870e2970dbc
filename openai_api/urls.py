from __future__ import annotations

from django.urls import path, re_path

from openai_api import views

urlpatterns = [
    path("models", views.models_list, name="openai-models"),
    path("models/<str:model>", views.model_detail, name="openai-model"),
    path("chat/completions", views.chat_completions, name="openai-chat-completions"),
    path("responses", views.responses_create, name="openai-responses"),
    path("responses/<str:response_id>", views.response_detail, name="openai-response"),
    path(
        "responses/<str:response_id>/cancel",
        views.response_cancel,
        name="openai-response-cancel",
    ),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
