from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from django.apps import AppConfig


def _mark_worker(**kwargs: Any) -> None:
    from webhooks import services

    services.in_worker = True


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents.runtime.executors import periodic_hooks
        from webhooks import receivers
        from webhooks.services import deliveries_dispatch_due

        receivers.connect()
        worker_init.connect(_mark_worker, weak=False, dispatch_uid="webhooks.in_worker")
        if deliveries_dispatch_due not in periodic_hooks:
            periodic_hooks.append(deliveries_dispatch_due)
