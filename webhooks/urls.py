from __future__ import annotations

from django.urls import path

from webhooks import api

urlpatterns = [
    path("", api.EndpointListView.as_view(), name="webhook-list"),
    path(
        "deliveries/<str:delivery_id>/redeliver/",
        api.DeliveryRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
    path("<str:endpoint_id>/", api.EndpointDetailView.as_view(), name="webhook-detail"),
    path("<str:endpoint_id>/test/", api.EndpointTestView.as_view(), name="webhook-test"),
    path(
        "<str:endpoint_id>/rotate-secret/",
        api.EndpointRotateSecretView.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "<str:endpoint_id>/deliveries/",
        api.EndpointDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
]
