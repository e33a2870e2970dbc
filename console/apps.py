from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator's console: the admin's navigation, dashboard and shared admin pieces."""

    name = "console"
    verbose_name = "Console"
