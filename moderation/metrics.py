"""Moderation's Prometheus metrics (kept here, apart from monitoring/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

findings_total = Counter(
    "switchyard_moderation_findings_total",
    "Moderation findings in runs, by stage, finding kind and action",
    ["stage", "kind", "action"],
)
