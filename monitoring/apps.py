from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from django.conf import settings

        from monitoring import collectors
        from monitoring.access import parse_networks

        parse_networks(tuple(settings.METRICS_ALLOWED_NETWORKS))  # a typo fails at start
        collectors.register()
