"""`python -m trainer run --config infra/trainer.yaml`, the file as shipped, on a stream the shipped join wrote.

Only addresses, ports and folders point at the test's own stack, through the variables the file reads
(`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL`, `MODEL_DIR`, `METRICS_PORT`). Everything else is the file's:
the topic, the consumer group, the registry's keys, the gate, TensorBoard summaries on (what crashed a
fresh clone in issue #23, when every test turned them off). The join (`infra/sample_join.yaml`, run
with the jobs venv's Python, as the README does) publishes its task settings in the same Redis, so the
sidecar's start-up check of its horizons against the join's runs too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devstack.processes import free_port
from tests.infra.test_shipped_configs import JOIN_YAML, generate, private_stack, run, shipped_env

ROOT = Path(__file__).resolve().parents[2]
JOBS_PY = str(ROOT / ".venv" / "jobs" / "bin" / "python")
TRAINER_YAML = ROOT / "infra" / "trainer.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def test_the_sidecar_runs_with_infra_trainer_yaml_as_shipped(tmp_path: Path) -> None:
    with private_stack(tmp_path / "state") as stack:
        # 10,000 impressions over ~3 h of event time (--rate 1): the join's 10-minute window closes as the
        # stream goes, so NEGATIVEs and POSITIVEs arrive interleaved, as they do live, and the gate has
        # enough scored samples to judge (the join's bounded end emits only the last 10 minutes' NEGATIVEs)
        generate(stack, tmp_path / "events.jsonl", "--impressions", "10000", "--rate", "1", python=JOBS_PY)
        run([JOBS_PY, "-m", "jobs.sample_join", "run", "--config", str(JOIN_YAML), "--exit-when-idle", "2s"],
            shipped_env(stack, METRICS_PORT="0"), timeout_s=180)

        model_dir, port = tmp_path / "models" / "click", free_port()
        env = shipped_env(stack, MODEL_DIR=str(model_dir), METRICS_PORT=str(port))
        log = tmp_path / "sidecar.log"
        with log.open("wb") as err:
            sidecar = subprocess.Popen([sys.executable, "-m", "trainer", "run", "--config", str(TRAINER_YAML),
                                        "--exit-when-idle", "5s"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=err)
            metrics = None
            while sidecar.poll() is None and metrics is None:  # served while it runs, on the port given
                metrics = _scrape(port)
                time.sleep(0.2)
            out, _ = sidecar.communicate(timeout=300)
        assert sidecar.returncode == 0, log.read_text()[-3000:]
        assert metrics is not None and "trainer_samples_trained_total" in metrics, "no /metrics while it ran"

        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert summary["stopped_by"] == "idle" and summary["samples_trained"] > 10_000, summary
        assert any(v["status"] == "published" for v in summary["versions"]), summary
        logged = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(r["msg"] == "the join's horizon agrees with the trainer's" for r in logged), "no horizon check"
        assert list((model_dir / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard summaries"

        listed = run([sys.executable, "-m", "trainer", "versions", "--config", str(TRAINER_YAML), "--json"], env,
                     timeout_s=60)
        versions = json.loads(listed.stdout)
        assert versions["current"] in [v["version"] for v in versions["versions"] if v["status"] == "published"]
        assert (model_dir / str(versions["current"]) / "saved_model.pb").is_file()


DEMO_YAML = ROOT / "infra" / "demo" / "trainer.yaml"


def _leaves(value: object, path: str) -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}").items()}
    return {path: value}


def test_the_demo_judges_versions_as_shipped_or_says_why_not() -> None:
    """Every gate and rollback setting of the demo's sidecars that differs from infra/trainer.yaml is
    named, with its reason, in a comment of infra/demo/trainer.yaml and in docs/trainer.md."""
    from trainer.config import TrainerConfig

    shipped, demo = TrainerConfig.load(TRAINER_YAML).sidecar, TrainerConfig.load(DEMO_YAML).sidecar
    differ = []
    for section in ("gate", "rollback"):
        ours = _leaves(getattr(shipped, section).model_dump(), section)
        theirs = _leaves(getattr(demo, section).model_dump(), section)
        differ += [path for path in ours if ours[path] != theirs[path]]
    comments = " ".join(line.split("#", 1)[1] for line in DEMO_YAML.read_text().splitlines() if "#" in line)
    docs = (ROOT / "docs" / "trainer.md").read_text()
    uncommented = [p for p in differ if not re.search(rf"\b{re.escape(p.rsplit('.', 1)[1])}\b", comments)]
    undocumented = [p for p in differ if f"`{p}`" not in docs]
    assert not uncommented, f"infra/demo/trainer.yaml differs from infra/trainer.yaml without a comment: {uncommented}"
    assert not undocumented, f"docs/trainer.md does not name the demo's differing settings {undocumented}"
