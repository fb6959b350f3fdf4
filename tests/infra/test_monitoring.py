"""The monitoring files (infra/monitoring) against the code that exports the metrics.

Every metric name in the Grafana dashboard's and the alert rules' expressions is one the code
exports: the embedded join's and the trainer's registries are built and their collectors read (the
trainer's metrics module imports no TensorFlow, so this venv can); the Flink job's own names come
from :mod:`jobs.runtime.flink.functions`, and every ``flink_*`` name, Flink's built-in ones included,
is checked against a running job in tests/jobs/test_flink_metrics.py. The files parse and have what
Prometheus and Grafana require, the scrape targets' ports are the shipped configs' defaults, and
docs/observability.md lists every metric.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.monitoring import (
    SCRAPE_CONFIG,
    dashboard_panels,
    expressions,
    load_alerts,
    load_dashboard,
    metric_names,
)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_OWN = {"up"}  # series Prometheus writes itself for every target
SEVERITIES = {"critical", "warning", "info"}
ALERT_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
RECORD_KEYS = {"record", "expr", "labels"}
GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "labels"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# the sample names a metric family of each type exposes (prometheus_client's exposition)
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}


def _families() -> dict[str, str]:
    """Metric family -> type, of the embedded join's and the trainer sidecar's registries."""
    from jobs.runtime.embedded.metrics import RuntimeMetrics
    from trainer.sidecar.metrics import SidecarMetrics

    families = {}
    for registry in (RuntimeMetrics().registry, SidecarMetrics("click").registry):
        for family in registry.collect():
            families[family.name] = family.type
    return families


def _exported() -> set[str]:
    return {name + suffix for name, kind in _families().items() for suffix in SUFFIXES[kind]}


def _flink_names() -> set[str]:
    from jobs.runtime.flink.functions import METRICS, prometheus_name

    return {prometheus_name(m) for m in METRICS}


def test_the_registries_hold_the_metrics_they_are_known_by() -> None:
    families = _families()
    assert {"sample_join_events_in", "sample_join_watermark_lag_seconds", "trainer_samples_trained",
            "trainer_consumer_lag", "trainer_rollbacks"} <= set(families)
    assert families["sample_join_checkpoint_duration_seconds"] == "histogram"


def test_every_metric_of_the_dashboard_and_the_rules_exists() -> None:
    exported, ours = _exported(), _flink_names()
    used: dict[str, list[str]] = {}
    for where, expr in expressions().items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            used.setdefault(name, []).append(where)
    unknown = {
        name: places for name, places in used.items()
        if name not in exported | PROMETHEUS_OWN and not name.startswith("flink_")
    }
    assert not unknown, f"not exported by the join or the trainer: {unknown}"
    flink_ours = {n for n in used if n.startswith("flink_taskmanager_job_task_operator_sampleJoin_")}
    assert flink_ours <= ours, f"not registered by jobs/runtime/flink/functions.py: {flink_ours - ours}"
    # the dashboard covers both joins and the trainer
    assert flink_ours and all(any(n.startswith(p) for n in used) for p in ("sample_join_", "trainer_"))


@pytest.mark.parametrize("expr, names", [
    ('sum by (task) (rate(trainer_samples_trained_total{task=~"$task"}[$__rate_interval]))',
     {"trainer_samples_trained_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 1e3", {"x_bucket"}),
    ("a and on (task) sum by (task) (b) > 0 offset 5m", {"a", "b"}),
    ('time() - min(w{operator_name="sample_join"} > 0) / 1000', {"w"}),
])
def test_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- the alert rules ---------------------------------------------------------------------------------
def test_the_alert_rules_have_what_prometheus_requires() -> None:
    alerts = load_alerts()
    assert set(alerts) == {"groups"}
    seen_groups, seen_alerts = set(), set()
    for group in alerts["groups"]:
        assert set(group) <= GROUP_KEYS and group["name"] and group["rules"], group.get("name")
        assert group["name"] not in seen_groups
        seen_groups.add(group["name"])
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            assert set(rule) <= (ALERT_KEYS if "alert" in rule else RECORD_KEYS), name
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
            assert re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", name), name
            if "alert" not in rule:
                continue
            assert name not in seen_alerts, f"alert {name} twice"
            seen_alerts.add(name)
            for key in ("for", "keep_firing_for"):
                assert key not in rule or DURATION.match(str(rule[key])), (name, rule[key])
            assert rule["labels"]["severity"] in SEVERITIES, name
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
            assert rule["expr"].count("(") == rule["expr"].count(")"), name
    # what the issue asks them to watch
    text = " ".join(r["expr"] for g in alerts["groups"] for r in g["rules"])
    for metric in ("trainer_consumer_lag", "sample_join_watermark_lag_seconds", "deadLettered",
                   "sample_join_deadlettered_total", "trainer_publishes_total", "trainer_refusals_total",
                   "trainer_rollbacks_total", "trainer_served_lag_seconds"):
        assert metric in text, metric


def test_the_rules_select_jobs_the_scrape_config_defines() -> None:
    jobs = {c["job_name"] for c in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]}
    selected = set()
    for expr in expressions().values():
        selected |= set(re.findall(r'\bjob="([^"]+)"', expr))
    assert selected and selected <= jobs, selected - jobs


# -- the dashboard -------------------------------------------------------------------------------------
def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for p in dashboard_panels(dashboard)
                                                   if p not in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    panels = dashboard_panels(dashboard)
    assert len(panels) >= 15
    for panel in [*dashboard["panels"], *panels]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", target["expr"])) - {"__rate_interval", "__interval", "__range"}
            assert used <= set(variables), (panel["title"], used)


# -- the scrape config ------------------------------------------------------------------------------
def _shipped(path: Path, *keys: str) -> Any:
    """A value of a shipped config as it reads with none of its variables set (their defaults)."""
    from common.config import expand_env

    node = yaml.safe_load(expand_env(path.read_text(), {}))
    for key in keys:
        node = node[key]
    return node


def test_the_scrape_config_points_at_the_shipped_ports() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["global"]["scrape_interval"]
    for rules in config["rule_files"]:
        assert (SCRAPE_CONFIG.parent / rules).is_file(), rules
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"])
    for job in jobs.values():
        assert "static_configs" in job or "kubernetes_sd_configs" in job, job["job_name"]
    targets = {job: [t for s in c.get("static_configs", []) for t in s["targets"]] for job, c in jobs.items()}
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())["services"]
    for job, hosts in targets.items():
        for target in hosts:
            assert target.split(":")[0] in compose, f"{job}: {target} is not a compose service"
    join_port = _shipped(ROOT / "infra" / "sample_join.yaml", "metrics", "port")
    trainer_port = _shipped(ROOT / "infra" / "trainer.yaml", "sidecar", "metrics_port")
    assert targets["sample-join"] == [f"sample-join:{join_port}"]
    assert targets["trainer"] == [f"trainer:{trainer_port}"]
    for service in ("sample-join", "trainer"):  # the container publishes the port the config reads
        assert compose[service]["environment"]["METRICS_PORT"] == targets[service][0].split(":")[1]


# -- the documentation --------------------------------------------------------------------------------
def test_docs_list_every_metric() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    missing = [name for name in [*_families(), *_flink_names()] if f"`{name}" not in doc]
    assert not missing, f"docs/observability.md does not list {missing}"
    for path in ("infra/monitoring/grafana-dashboard.json", "infra/monitoring/alerts.yml",
                 "infra/monitoring/prometheus.yml"):
        assert path in doc, path
