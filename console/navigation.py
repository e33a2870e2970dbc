"""The admin sidebar: the operator's tasks grouped, each link shown only with its permission."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import reverse_lazy


def _can(permission: str) -> Callable[[HttpRequest], bool]:
    def check(request: HttpRequest) -> bool:
        return request.user.has_perm(permission)

    return check


def _item(title: str, icon: str, model: str, *, query: str = "") -> dict[str, Any]:
    app_label, model_name = model.split(".")
    link = reverse_lazy(f"admin:{app_label}_{model_name}_changelist")
    return {
        "title": title,
        "icon": icon,
        "link": f"{link}{query}" if query else link,
        "permission": _can(f"{app_label}.view_{model_name}"),
    }


def sidebar(request: HttpRequest) -> list[dict[str, Any]]:
    return [
        {
            "title": "Overview",
            "items": [
                {"title": "Dashboard", "icon": "dashboard", "link": reverse_lazy("admin:index")},
            ],
        },
        {
            "title": "Agents",
            "separator": True,
            "items": [
                _item("Agents", "smart_toy", "agents.agent"),
                _item("Runs", "play_circle", "agents.run"),
                _item("Threads", "forum", "agents.thread"),
                _item("Cost ledger", "receipt_long", "agents.modelcall"),
                _item("Providers", "cloud", "agents.provider"),
                _item("Price overrides", "sell", "agents.priceoverride"),
            ],
        },
        {
            "title": "Moderation",
            "separator": True,
            "items": [
                _item("Triage queue", "flag", "moderation.flag", query="?status__exact=open"),
                _item("Policies", "policy", "moderation.policy"),
            ],
        },
        {
            "title": "Secrets",
            "separator": True,
            "items": [
                _item("Secrets", "key", "secrets_vault.secret"),
                _item("Versions", "history", "secrets_vault.secretversion"),
                _item("Access log", "visibility", "secrets_vault.secretaccessevent"),
            ],
        },
        {
            "title": "Webhooks",
            "separator": True,
            "items": [
                _item("Endpoints", "webhook", "webhooks.webhookendpoint"),
                _item("Delivery log", "outbox", "webhooks.webhookdelivery"),
            ],
        },
        {
            "title": "Accounts",
            "separator": True,
            "items": [
                _item("Users", "person", "auth.user"),
                _item("Groups", "group", "auth.group"),
                _item("API tokens", "token", "knox.authtoken"),
            ],
        },
    ]


def stylesheet(request: HttpRequest) -> str:
    return static("console/console.css")


def script(request: HttpRequest) -> str:
    return static("console/console.js")
