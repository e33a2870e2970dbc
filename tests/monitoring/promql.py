"""What the monitoring tests share: the dashboards' and alert rules' PromQL, made concrete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
PROMETHEUS = ROOT / "monitoring" / "prometheus"

# PromQL's functions, aggregations and keywords: never metric names.
PROMQL_WORDS = frozenset(
    "sum min max avg count stddev stdvar topk bottomk quantile count_values group rate irate "
    "increase delta idelta histogram_quantile clamp clamp_min clamp_max abs absent "
    "absent_over_time label_replace label_join vector scalar time round ceil floor sort "
    "sort_desc avg_over_time max_over_time min_over_time sum_over_time count_over_time deriv "
    "predict_linear resets changes by without on ignoring group_left group_right and or "
    "unless bool offset".split()
)


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """The query as Grafana sends it with every agent selected."""
    return expr.replace("$__rate_interval", rate_interval).replace("$agent", ".*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?", "", text)  # numbers
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text)) - PROMQL_WORDS


def served_names(exposition: str) -> set[str]:
    """Every sample name a /metrics body can carry, from its TYPE lines (a labelled metric
    with no sample yet still has one)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            names.update(name + suffix for suffix in suffixes)
    return names
