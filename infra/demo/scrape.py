"""Reading the join runtime's and the trainer sidecar's Prometheus endpoints, as a dashboard would."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

# name -> {frozenset of (label, value) pairs -> value}
Scrape = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(port: int, timeout_s: float = 1.0) -> Scrape:
    """All samples of the endpoint on 127.0.0.1:port; empty while it is not up (yet, or any more)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    samples: Scrape = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][frozenset(sample.labels.items())] = sample.value
    return dict(samples)


def total(metrics: Scrape, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for key, v in metrics.get(name, {}).items() if wanted <= key)


def by_label(metrics: Scrape, name: str, label: str) -> dict[str, float]:
    """A metric summed per value of one label."""
    out: dict[str, float] = defaultdict(float)
    for key, value in metrics.get(name, {}).items():
        out[dict(key).get(label, "")] += value
    return dict(out)


def value(metrics: Scrape, name: str) -> float | None:
    """The single value of a gauge (None when absent)."""
    values = list(metrics.get(name, {}).values())
    return values[0] if values else None
