"""The Prometheus scrape config, alert rules and Grafana dashboard of odl-loop (docs/observability.md).

:func:`metric_names` reads the metric names out of their PromQL expressions, so that the tests can
hold every name to the code that exports it (tests/infra/test_monitoring.py, and the Flink job's
names to a running job in tests/jobs/test_flink_metrics.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "grafana-dashboard.json"
ALERTS = HERE / "alerts.yml"
SCRAPE_CONFIG = HERE / "prometheus.yml"

# PromQL's own words that look like names: keywords, set operators, modifiers.
_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
          "atan2", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")  # Grafana's template variables
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, keywords, labels or numbers)."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("1", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        token, start = match.group(0), match.start()
        if start and (text[start - 1].isdigit() or text[start - 1] == "."):
            continue  # an exponent or a duration's unit: 1e3, 5m
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() not in _WORDS:
            names.add(token)
    return names


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def load_alerts() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return data


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard and the alert rules, by where it is."""
    out: dict[str, str] = {}
    for panel in dashboard_panels(load_dashboard()):
        for target in panel.get("targets", []):
            where = f"dashboard panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}"
            out[where] = str(target["expr"])
    for group in load_alerts()["groups"]:
        for rule in group["rules"]:
            out[f"alert rule {rule.get('alert') or rule.get('record')}"] = str(rule["expr"])
    return out
