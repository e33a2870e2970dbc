"""The Grafana dashboards and Prometheus alert rules: valid, and reading only real metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from django.test import Client

import moderation.metrics  # noqa: F401 - registers the worker-side families too
import monitoring.metrics  # noqa: F401
from tests.conftest import require_service
from tests.monitoring.promql import (
    PROMETHEUS,
    alert_rules,
    concrete,
    dashboards,
    metric_names,
    panel_queries,
    served_names,
)

# Not served by Switchyard: Prometheus writes it for every scrape target.
PROMETHEUS_OWN = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_service("promtool (Debian's prometheus package)", shutil.which("promtool") is not None)
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_the_metric_name_reader_finds_names_and_only_names() -> None:
    expr = (
        'sum by (le, agent) (rate(a_bucket{x="rate(b)", y=~"c|d"}[5m]))'
        ' / clamp_min(b_total, 1e-9) > 0.25 or absent(up{job="w"})'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def test_every_dashboard_is_well_formed() -> None:
    boards = dashboards()
    assert boards, "no dashboard under monitoring/grafana/dashboards"
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{board['uid']}: panel ids repeat"
        for panel in board["panels"]:
            box = panel["gridPos"]
            assert box["x"] + box["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                continue
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_every_metric_a_dashboard_or_alert_reads_is_served(db: None) -> None:
    client = Client()
    client.get("/livez")  # django-prometheus registers its request metrics on first use
    served = served_names(client.get("/metrics").content.decode()) | PROMETHEUS_OWN
    queries = [q for board in dashboards() for q in panel_queries(board)]
    queries += [(rule["alert"], rule["expr"]) for rule in alert_rules()]
    read = set()
    for title, expr in queries:
        names = metric_names(concrete(expr))
        assert names, f"{title}: reads no metric"
        assert names <= served, f"{title}: {sorted(names - served)} not served by /metrics"
        read |= names
    # The run-state gauges, the run counters and django-prometheus' are all in use.
    assert {"switchyard_runs_in_status", "switchyard_runs_finished_total"} <= read
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in read


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool checks PromQL offline in rule files: one recording rule per panel query.
    rules = [
        {"record": f"dashboard:query{i}", "expr": concrete(expr)}
        for i, (_, expr) in enumerate(q for board in dashboards() for q in panel_queries(board))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_prometheus_config_and_alert_rules_are_valid() -> None:
    config = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    names = {rule["alert"] for rule in alert_rules()}
    # What DESIGN section 10 asks for: failing runs, stuck runs, budgets, no workers.
    assert {
        "SwitchyardRunsFailing",
        "SwitchyardRunsStuck",
        "SwitchyardBudgetNearLimit",
        "SwitchyardNoWorkers",
    } <= names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_alert_rules_pass_their_unit_tests() -> None:
    # alerts.test.yml feeds series and says which alert fires when, rendered.
    result = promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_grafana_provisioning_points_at_the_dashboards() -> None:
    root = PROMETHEUS.parent / "grafana" / "provisioning"
    providers = yaml.safe_load((root / "dashboards" / "switchyard.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    sources = yaml.safe_load((root / "datasources" / "switchyard.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
