"""Delta exports through the sidecar's own parts, with a real Redis registry (and, end to end, `trainer
run` on a real broker): versions chained in the registry, `versions` showing base and chain, a delta that
does not apply refused like any bad version, and serving-config and rollback working on delta versions."""

from __future__ import annotations

import json
import logging
import signal
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sidecar_helpers import SidecarEnv, produce, wait_for
from stream import stream

from trainer.__main__ import main
from trainer.config import TrainerConfig
from trainer.delta import DELTA_DIR, PAYLOAD, materialize
from trainer.samples import SampleTable, parse_sample
from trainer.sidecar.metrics import SidecarMetrics
from trainer.sidecar.publishing import Candidate, Publisher
from trainer.sidecar.registry import Registry, write_registry_file
from trainer.sidecar.versions import VersionStore

pytestmark = pytest.mark.integration


class Trainer:
    """A state trained batch by batch, and its Publisher over a real registry (the sidecar's parts)."""

    def __init__(self, redis_url: str, model_dir: Path, **overrides: Any):
        from trainer.fit import targets
        from trainer.state import TrainerState

        self.targets = targets
        config = TrainerConfig.load(None, {"model.hidden_units": [8], "features.vocab.capacity": 64, **overrides})
        self.table = SampleTable([parse_sample(s) for s in stream(1200, seed=5, users=40, items=12)])
        self.state = TrainerState.create(config, self.table)
        self.prepared = self.state.prepare(self.table)
        self.model_dir = model_dir
        self.prefix = f"test:{uuid.uuid4().hex[:8]}"
        write_registry_file(model_dir, self.prefix)
        self.store = VersionStore(model_dir, keep=3)
        self.registry = Registry(redis_url, self.prefix, self.store, retry_for_s=5.0)
        self.metrics = SidecarMetrics("t")
        self.publisher = Publisher(config.sidecar, self.registry, self.store, self.metrics)
        self.trained = 0

    def version(self, number: int) -> dict[str, Any]:
        """Two more batches, then version ``number`` through export, gate and registry."""
        for _ in range(2):
            rows = np.arange(self.trained, self.trained + 100)
            self.trained += 100
            self.state.train_and_score(self.state.encode(self.prepared, rows), self.targets(self.table, rows, None))
        record = self.publisher.export_and_gate(self.state, Candidate(number, self.trained, {0: self.trained}))
        assert record is not None
        return record

    def cli(self, *argv: str) -> list[str]:
        return [*argv, "--redis-url", self.registry.where, "--model-dir", str(self.model_dir)]


def test_the_shipped_default_writes_full_exports_only(redis_url: str, tmp_path: Path) -> None:
    trainer = Trainer(redis_url, tmp_path / "model")  # sidecar.delta as shipped: off
    records = [trainer.version(v) for v in (1, 2, 3)]
    assert [(r["export"], r["status"]) for r in records] == [("full", "published")] * 3
    assert not any((tmp_path / "model" / str(v) / DELTA_DIR).exists() for v in (1, 2, 3))
    assert records[0]["bytes"]["full"] > 10_000


def test_deltas_chain_in_the_registry_and_one_that_does_not_apply_is_refused(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "model"
    trainer = Trainer(redis_url, model_dir, **{"sidecar.delta.enabled": True, "sidecar.delta.full_every": 4})
    records = [trainer.version(v) for v in (1, 2, 3)]
    assert [(r["export"], r.get("base"), r.get("chain"), r["status"]) for r in records] == [
        ("full", None, None, "published"), ("delta", 1, [2], "published"), ("delta", 1, [2, 3], "published")]
    assert records[2]["bytes"]["delta"] < records[2]["bytes"]["full"] / 5
    assert trainer.registry.current() == 3

    # a link of the chain damaged on disk: the next delta does not apply
    payload = model_dir / "3" / DELTA_DIR / PAYLOAD
    payload.write_bytes(payload.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING, logger="trainer.sidecar"):
        refused = trainer.version(4)
    assert (refused["status"], refused["export"], refused["chain"]) == ("refused", "delta", [2, 3, 4])
    assert refused["reasons"][0].startswith("the delta does not apply: ") and "fails its checksum" in \
        refused["reasons"][0]
    lines = [r for r in caplog.records if getattr(r, "version", None) == 4]
    assert len(lines) == 1 and "fails its checksum" in lines[0].reason  # one log line with the reason
    assert trainer.registry.current() == 3  # never current
    assert not (model_dir / "4" / "saved_model.pb").exists() and (model_dir / "4" / DELTA_DIR).is_dir()
    registry = trainer.metrics.registry
    assert registry.get_sample_value("trainer_delta_failures_total", {"task": "t"}) == 1
    assert registry.get_sample_value("trainer_refusals_total", {"task": "t"}) == 1
    # the chain is broken: a full export starts the next one
    assert [trainer.version(v)["export"] for v in (5, 6)] == ["full", "delta"]
    assert trainer.registry.current() == 6

    # versions: base and chain, in the JSON and the table
    assert main(trainer.cli("versions", "--json")) == 0
    listed = {r["version"]: r for r in json.loads(capsys.readouterr().out)["versions"]}
    assert (listed[6]["export"], listed[6]["base"], listed[6]["chain"]) == ("delta", 5, [6])
    assert main(trainer.cli("versions")) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "export"
    assert [line.split("  ")[-1] for line in table[1:]] == [
        "full", "delta of 1: 2", "delta of 1: 2 3", "delta of 1: 2 3 4", "full", "delta of 5: 6"]

    # retention (keep 3) kept versions 4..6 and what their chains need: 1, 2 and 3
    assert trainer.store.on_disk() == [1, 2, 3, 4, 5, 6]

    # a rollback by hand to a delta version, and serving-config serving it
    assert main(trainer.cli("rollback", "--to", "2")) == 0
    capsys.readouterr()
    assert main(["serving-config", "--model-dir", str(model_dir)]) == 0
    assert "versions: 2\n" in capsys.readouterr().out
    from trainer.export import ExportedModel

    served = ExportedModel(model_dir / "2").predict(trainer.table)
    applied = ExportedModel(materialize(model_dir, 2, tmp_path / "materialized")).predict(trainer.table)
    assert np.array_equal(served, applied)


@pytest.mark.slow
def test_trainer_run_writes_chains_that_materialize_to_its_own_versions(sidecar_env, processes) -> None:
    env: SidecarEnv = sidecar_env(**{"sidecar.delta.enabled": True, "sidecar.delta.full_every": 2,
                                     "sidecar.export_interval": "2s", "sidecar.keep_versions": 10})
    samples = stream(2400, seed=8, users=60, items=15)
    proc = env.start()
    processes.append(proc)
    rounds = 6
    for i in range(rounds):  # each round's samples reach a version of their own
        part = samples[i * len(samples) // rounds:(i + 1) * len(samples) // rounds]
        produce(env.bootstrap, env.topic, part)
        trained = (i + 1) * len(samples) // rounds
        wait_for(lambda trained=trained: any((r.get("samples_trained") or 0) >= trained for r in env.versions()),
                 240, f"a version trained on {trained} samples")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0, (env.model_dir.parent / "sidecar.log").read_text()[-3000:]
    versions = env.versions()
    kinds = [r["export"] for r in versions]
    assert kinds[0] == "full" and "delta" in kinds, kinds
    by_number = {r["version"]: r for r in versions}
    for r in versions:  # the gate judged them (a weak young model may be refused); every delta applied
        assert not any(reason.startswith("the delta does not apply") for reason in r["reasons"]), r["reasons"]
        if r["export"] == "delta":  # a full export, then at most full_every deltas
            assert 1 <= len(r["chain"]) <= 2 and r["chain"][-1] == r["version"]
            assert by_number[r["base"]]["export"] == "full"
    table = SampleTable([parse_sample(s) for s in samples[-300:]])
    from trainer.export import ExportedModel

    for r in (r for r in versions if r["export"] == "delta"):
        number = r["version"]
        out = materialize(env.model_dir, number, env.model_dir.parent / f"materialized-{number}")
        assert np.array_equal(ExportedModel(out).predict(table),
                              ExportedModel(env.model_dir / str(number)).predict(table)), number
