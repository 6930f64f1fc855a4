"""deploy/monitoring: the opt-in observability kit (PodMonitor, PrometheusRule, Grafana dashboard) scrapes
what the Deployments serve and queries only metrics the code exports.

Exported names come from the code itself (shared.metrics' registry); the names a PromQL expression uses
are parsed out with a small regex (`metric_names`), itself tested so that a misspelt metric is caught.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from shared import metrics
from shared.settings import Settings
from tests.deploy.support import DEPLOY, KUSTOMIZATION, by_component, by_kind, config_map, main_container

MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
SCRAPED = {"watcher", "backup-worker", "detach-worker", "rebuild-worker", "rollback-worker"}
"""Every component that runs kpromote, so serves /metrics."""
PROMQL_CLAUSES = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
PROMQL_IDENTIFIER = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\s*\()(?![\w:])")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label matchers, range
    and subquery brackets and grouping clauses are removed, that are not functions or keywords."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", "", text)
    text = re.sub(r"\[[^\[\]]*\]", "", text)
    text = PROMQL_CLAUSES.sub("", text)
    return {m[1] for m in PROMQL_IDENTIFIER.finditer(text) if m[1] not in PROMQL_KEYWORDS}


@cache
def exported() -> set[str]:
    return metrics.exported_names()


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of every panel, rows' nested panels included."""
    found = []
    for panel in dashboard()["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


def rules() -> list[dict[str, Any]]:
    (rule,) = by_kind("PrometheusRule").values()
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


# ---- the PromQL name parser


def test_metric_names_are_parsed_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, step) (rate(kpromote_step_duration_seconds_bucket{step=~"a|b",'
        ' outcome="succeeded"}[$__rate_interval]))) > 1e3 and on (queue) max_over_time(kpromote_queue_length'
        "[30m:1m] offset 5m) unless ignoring(x) count without (policy) (kpromote_policy_phase == 1)"
    )
    assert metric_names(expr) == {
        "kpromote_step_duration_seconds_bucket",
        "kpromote_queue_length",
        "kpromote_policy_phase",
    }
    assert metric_names("sum(rate(kpromote_object_total[5m]))") == {"kpromote_object_total"}
    assert "kpromote_object_total" not in exported(), "a misspelt metric is caught by the checks below"
    assert metric_names('absent(up{job="x"})') == {"up"}


def test_exported_names_are_the_series_the_code_serves() -> None:
    assert {
        "kpromote_objects_total",
        "kpromote_step_duration_seconds_bucket",
        "kpromote_policy_phase",
        "kpromote_queue_length",
    } <= exported()
    assert "kpromote_objects" not in exported() and not any(n.endswith("_created") for n in exported())


# ---- the dashboard


def test_every_dashboard_query_names_only_exported_metrics() -> None:
    queries = dashboard_queries()
    assert queries
    for title, expr in queries:
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= exported(), f"{title}: {expr} names {sorted(names - exported())}, not exported"


def test_the_dashboard_shows_what_a_platform_team_watches() -> None:
    """Namespaces by phase, objects/s per step, step durations, API requests and errors per cluster,
    queue lengths, compensations."""
    used = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    assert {
        "kpromote_namespaces",
        "kpromote_policy_phase",
        "kpromote_objects_total",
        "kpromote_step_duration_seconds_bucket",
        "kpromote_api_requests_total",
        "kpromote_api_retries_total",
        "kpromote_queue_length",
        "kpromote_compensations_total",
        "kpromote_failures_total",
    } <= used
    board = dashboard()
    assert board["uid"] == "kosmos-promote" and board["title"] == "kosmos-promote"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


# ---- the alerts


def test_every_alert_names_only_exported_metrics() -> None:
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names and names <= exported(), f"{rule['alert']}: {sorted(names - exported())}, not exported"


def test_the_alerts_cover_failures_failed_rollbacks_stalls_and_backlog() -> None:
    by_metric = {name: rule for rule in rules() for name in metric_names(rule["expr"])}
    assert set(by_metric) >= {
        "kpromote_failures_total",
        "kpromote_policy_phase",
        "kpromote_stalls_total",
        "kpromote_queue_length",
    }
    assert 'phase="FailedRollback"' in by_metric["kpromote_policy_phase"]["expr"]
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


# ---- scraping


def test_every_kpromote_container_serves_its_metrics_on_a_named_port() -> None:
    defaults = Settings.model_fields
    configured = config_map("kosmos-promote-config")
    for name in SCRAPED:
        container = main_container(by_component()[name])
        variable, field = (
            ("KPROMOTE_WATCHER_METRICS_PORT", "watcher_metrics_port")
            if name == "watcher"
            else ("KPROMOTE_METRICS_PORT", "metrics_port")
        )
        port = int(configured.get(variable, defaults[field].default))
        assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}], name


def test_the_pod_monitor_scrapes_exactly_the_pods_with_a_metrics_port() -> None:
    (monitor,) = by_kind("PodMonitor").values()
    selector = monitor["spec"]["selector"]

    def selected(labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and all(
            labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"] if e["operator"] == "In"
        )

    scraped = {
        name for name, d in by_component().items() if selected(d["spec"]["template"]["metadata"]["labels"])
    }
    assert scraped == SCRAPED
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    # The base's NetworkPolicy lets Prometheus reach those ports (and only those).
    policy = by_kind("NetworkPolicy")["kosmos-promote-metrics"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    ports = {main_container(by_component()[name])["ports"][0]["containerPort"] for name in SCRAPED}
    assert ports <= allowed


# ---- kustomize


def test_the_kit_is_opt_in_and_lists_its_files() -> None:
    base = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    assert not any(entry.startswith("monitoring") for entry in base["resources"])
    kit = yaml.safe_load((MONITORING / KUSTOMIZATION).read_text())
    assert kit["namespace"] == "kosmos-promote"
    assert sorted(kit["resources"]) == ["podmonitor.yaml", "prometheusrule.yaml"]
    (generator,) = kit["configMapGenerator"]
    assert generator["files"] == ["kosmos-promote.json=dashboard.json"]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}


def test_kustomize_builds_the_kit_with_the_dashboard() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize) is not installed; the checks above still ran")
    built = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(built) if o}
    assert set(objects) == {
        ("PodMonitor", "kosmos-promote"),
        ("PrometheusRule", "kosmos-promote"),
        ("ConfigMap", "kosmos-promote-dashboard"),
    }
    for obj in objects.values():
        assert obj["metadata"]["namespace"] == "kosmos-promote"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kosmos-promote"
    data = objects[("ConfigMap", "kosmos-promote-dashboard")]["data"]
    assert json.loads(data["kosmos-promote.json"]) == dashboard()
