"""The Grafana dashboard and the Prometheus alerts query only metrics the service exports.

The exported names come from the Prometheus exposition text of the service's registry
(service.metrics rendered with generate_latest), parsed as a scraper would. The same
function accepts the text of a running service's /metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import service.metrics  # noqa: F401  (registers every metric of the service)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/inventory.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
OPERATIONS = ROOT / "docs/operations.md"
METRIC = re.compile(r"\binventory_[a-z0-9_]+\b")
# what a family of each type exposes (prometheus_client names counters without _total)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


def exported_metric_names(exposition: str) -> set[str]:
    """Every series name a scrape of this exposition text can return."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    names = exported_metric_names(generate_latest(REGISTRY).decode())
    assert "inventory_rpc_requests_total" in names
    return names


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_exposition_parser_sees_labelled_families_without_samples() -> None:
    text = (
        "# HELP inventory_x_seconds x\n# TYPE inventory_x_seconds histogram\n"
        "# HELP inventory_y_total y\n# TYPE inventory_y_total counter\n"
    )
    names = exported_metric_names(text)
    assert {"inventory_x_seconds_bucket", "inventory_x_seconds_count", "inventory_y_total"} <= names


def test_every_dashboard_metric_is_exported(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used, f"query without a service metric: {expr}"
        assert used <= exported, f"not exported: {sorted(used - exported)} in {expr}"


def test_dashboard_covers_what_operators_watch() -> None:
    text = "\n".join(dashboard_exprs())
    for needle in (
        "inventory_rpc_requests_total",  # RPC rate and errors by method
        "inventory_rpc_seconds_bucket",  # RPC latency by method
        "by (outcome) (rate(inventory_events_total",  # events/s by outcome
        "inventory_consumer_lag",
        "inventory_outbox_backlog",
        "inventory_expiry_lag_seconds_bucket",
        'inventory_cache_requests_total{result="hit"}',  # cache hit ratio
        "inventory_engine_batch_size_bucket",
    ):
        assert needle in text, needle
    assert re.search(r"by \(method(, code)?\)", text)


def test_dashboard_is_well_formed() -> None:
    data = dashboard()
    assert data["uid"] and data["title"]
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    variables = {var["name"] for var in data["templating"]["list"]}
    for panel in data["panels"]:
        source = panel.get("datasource")
        if source:
            assert source["uid"].strip("${}") in variables | {"prometheus"}
        for target in panel.get("targets", []):
            assert target["refId"]


def test_every_alert_metric_is_exported(exported: set[str]) -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used <= exported, f"{rule['alert']}: not exported {sorted(used - exported)}"
        assert used or "up{" in rule["expr"], rule["alert"]


def test_every_alert_is_explained_in_the_runbook() -> None:
    runbook = OPERATIONS.read_text()
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        assert f"`{rule['alert']}`" in runbook, f"{rule['alert']} missing in docs/operations.md"
