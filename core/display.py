"""Small list-column renderers shared by the admins (every app's and the console's), so
tables stay narrow. Here in ``core`` because every app's admin uses them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def run_id_cell(run_id: uuid.UUID | str | None, *, link: bool = True) -> SafeString | str:
    """The first 8 characters of a run id, linked to its live view, with a copy button
    that copies the whole id."""
    if run_id is None:
        return "-"
    full = str(run_id)
    short = full[:8]
    if link:
        url = reverse("admin:agents_run_change", args=[full])
        label = format_html('<a href="{}" class="sy-short" title="{}">{}</a>', url, full, short)
    else:
        label = format_html('<span class="sy-short" title="{}">{}</span>', full, short)
    return format_html(
        '<span class="sy-nowrap">{} <button type="button" class="sy-copy" data-copy="{}" '
        'title="Copy the full id">copy</button></span>',
        label,
        full,
    )


def status_badge(status: str) -> SafeString:
    return format_html('<span class="sy-badge sy-status-{}">{}</span>', status, status)


def severity_badge(severity: str) -> SafeString:
    return format_html('<span class="sy-badge sy-sev-{}">{}</span>', severity, severity)


def when(value: datetime | None) -> SafeString | str:
    """Date and time to the second on one line."""
    if value is None:
        return "-"
    return format_html(
        '<span class="sy-nowrap">{}</span>', timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    )


BUDGET_AMBER, BUDGET_RED = 0.8, 1.0


def budget_row(row: dict[str, Any]) -> dict[str, Any]:
    """A budget-use row with its percent, bar width and colour (green, amber, red)."""
    ratio = row["ratio"]
    level = "red" if ratio >= BUDGET_RED else "amber" if ratio >= BUDGET_AMBER else "green"
    return {**row, "percent": round(ratio * 100, 1), "width": min(ratio, 1) * 100, "level": level}
