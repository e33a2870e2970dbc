from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents.runtime.executors import periodic_hooks
        from webhooks import receivers
        from webhooks.services import deliveries_dispatch_due

        receivers.connect()
        if deliveries_dispatch_due not in periodic_hooks:
            periodic_hooks.append(deliveries_dispatch_due)
