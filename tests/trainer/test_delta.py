"""Delta exports with real TensorFlow: a chain applied onto its full export gives, bit for bit, the full
export of the same step (predictions, variables, trainer.json), over chains of several lengths with IDs
evicted and admitted on the way; a chain that does not apply is refused, link by link, with its reason.

One stream is trained in small steps (a user field of 48 slots for 500 users, idle eviction after 6
steps: IDs are evicted and admitted, slots reused, between every two versions); each version is written
by the sidecar's own path (VersionStore.export with DeltaExports, sidecar.delta's shipped full_every), and
at the versions compared, the state is also exported in full, as a reference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from synth import make_samples

from trainer.__main__ import main
from trainer.config import DeltaConfig, TrainerConfig
from trainer.delta import DELTA_DIR, MANIFEST, PAYLOAD, DeltaError, DeltaExports, materialize
from trainer.export import META_PATH, ExportedModel, export_state
from trainer.fit import targets
from trainer.samples import SampleTable, parse_sample
from trainer.sidecar.versions import VersionStore
from trainer.state import TrainerState

FULL_EVERY = DeltaConfig().full_every  # the shipped default: versions 1 and 12 full, 2..11 and 13 deltas
VERSIONS = FULL_EVERY + 3
COMPARED = (2, 4, 7, FULL_EVERY + 1, FULL_EVERY + 3)  # chains of 1, 3, 6, full_every and (after a full) 1


def _meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / META_PATH).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The versions of one stream (model dir ``model``), the full exports of the compared steps
    (``reference/<version>``), samples to predict, and what each version was written as."""
    root = tmp_path_factory.mktemp("delta")
    samples, _ = make_samples(impressions=7000, users=500, items=60, seed=4)
    table = SampleTable([parse_sample(s) for s in samples])
    config = TrainerConfig.load(None, {
        "model.embedding_dim": 4, "model.wide_factor_dim": 2, "model.hidden_units": [16],
        "features.vocab.capacity": 48, "features.vocab.admit_after": 2, "features.vocab.evict_after_steps": 6,
    })
    state = TrainerState.create(config, table)
    prepared = state.prepare(table)
    store = VersionStore(root / "model", keep=100)
    deltas = DeltaExports(store.model_dir, enabled=True, full_every=FULL_EVERY)
    written, position = {}, 0
    for version in range(1, VERSIONS + 1):
        # two steps a version; none before version 3: a delta of a version that trained nothing
        for _ in range(0 if version == 3 else 2):
            rows = np.arange(position, position + 128)
            position += 128
            state.train_and_score(state.encode(prepared, rows), targets(table, rows, None))
        written[version] = store.export(state, version, deltas)
        if version in COMPARED:
            export_state(state, root / "reference" / str(version))
    test = SampleTable([parse_sample(s) for s in samples[position:position + 600]])
    return {"root": root, "model_dir": store.model_dir, "written": written, "test": test}


def _copy(run: dict[str, Any], tmp_path: Path) -> Path:
    model_dir = tmp_path / "model"
    shutil.copytree(run["model_dir"], model_dir)
    return model_dir


def test_versions_are_full_every_full_every_deltas(run: dict[str, Any]) -> None:
    kinds = [run["written"][v].kind for v in range(1, VERSIONS + 1)]
    assert kinds == ["full", *["delta"] * FULL_EVERY, "full", "delta"]
    last = run["written"][FULL_EVERY + 1]
    assert (last.base, last.chain) == (1, list(range(2, FULL_EVERY + 2)))
    assert last.record()["bytes"]["delta"] < last.record()["bytes"]["full"] / 5
    assert all(w.refused is None for w in run["written"].values())
    # a delta of a version that trained nothing changes no variable
    manifest = json.loads((run["model_dir"] / "3" / DELTA_DIR / MANIFEST).read_text())
    assert manifest["variables"] == []


@pytest.mark.parametrize("version", COMPARED)
def test_a_chain_applied_onto_its_full_export_is_the_full_export_of_that_step(
    run: dict[str, Any], version: int, tmp_path: Path
) -> None:
    out = materialize(run["model_dir"], version, tmp_path / "materialized")
    reference = run["root"] / "reference" / str(version)
    assert out == tmp_path / "materialized"
    assert _meta(out) == _meta(reference)  # step, vocabulary, delay model: everything trainer.json holds
    got, expected = ExportedModel(out), ExportedModel(reference)
    assert np.array_equal(got.predict(run["test"]), expected.predict(run["test"]))  # bit for bit
    assert sorted(v.name for v in got.loaded.variables) == sorted(v.name for v in expected.loaded.variables)
    for a, b in zip(sorted(got.loaded.variables, key=lambda v: v.name),
                    sorted(expected.loaded.variables, key=lambda v: v.name), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    # the version's own directory was written by the sidecar's path: the same SavedModel
    own = ExportedModel(run["model_dir"] / str(version))
    assert np.array_equal(own.predict(run["test"]), expected.predict(run["test"]))


def test_the_chains_admit_and_evict_ids(run: dict[str, Any]) -> None:
    counts = [json.loads((run["model_dir"] / str(v) / DELTA_DIR / MANIFEST).read_text())["vocab"].get("user_id", {})
              for v in range(2, FULL_EVERY + 2)]  # version 3 changed nothing
    assert sum(c.get("admitted", 0) for c in counts) > 10 and sum(c.get("evicted", 0) for c in counts) > 10
    assert not any(c.get("whole") for c in counts)  # carried as changes, not the whole field


def test_materialize_without_out_writes_the_version_directory_beside_its_delta(
    run: dict[str, Any], tmp_path: Path
) -> None:
    model_dir = _copy(run, tmp_path)
    version = model_dir / "5"
    shutil.rmtree(version)  # as a serving site receives it: the delta alone
    shutil.copytree(run["model_dir"] / "5" / DELTA_DIR, version / DELTA_DIR)
    assert materialize(model_dir, 5) == version
    assert (version / "saved_model.pb").is_file() and (version / DELTA_DIR / MANIFEST).is_file()
    assert np.array_equal(ExportedModel(version).predict(run["test"]),
                          ExportedModel(run["model_dir"] / "5").predict(run["test"]))
    assert materialize(model_dir, 1) == model_dir / "1"  # a full export is its own


def _corrupt_payload(model_dir: Path) -> None:
    payload = model_dir / "3" / DELTA_DIR / PAYLOAD
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))


def _wrong_shape(model_dir: Path) -> None:
    path = model_dir / "4" / DELTA_DIR / MANIFEST
    manifest = json.loads(path.read_text())
    entry = next(e for e in manifest["variables"] if e["rows"] is not None)
    entry["shape"] = [entry["shape"][0] + 1, *entry["shape"][1:]]
    path.write_text(json.dumps(manifest))


def _other_base(model_dir: Path) -> None:
    shutil.rmtree(model_dir / "1")
    shutil.copytree(model_dir / str(FULL_EVERY + 2), model_dir / "1")  # a full export, not the chain's


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: shutil.rmtree(d / "3"), r"needs version 3, which is not on disk \(missing link\)"),
        (lambda d: shutil.rmtree(d / "1"), r"starts at the full export 1, which is not on disk \(missing link"),
        (lambda d: shutil.rmtree(d / "3" / DELTA_DIR), r"version 3 has no delta in .* \(missing link\)"),
        (_corrupt_payload, "3/delta/delta.npz fails its checksum"),
        (_wrong_shape, r"version 4 changes .* \(shape mismatch\)"),
        (_other_base, "applies onto version 1 as it was exported, and what it is applied onto differs"),
    ],
    ids=["missing-link", "missing-base", "missing-delta", "checksum", "shape", "other-base"],
)
def test_a_chain_that_does_not_apply_is_refused_with_its_reason(
    run: dict[str, Any], tmp_path: Path, damage: Any, reason: str
) -> None:
    model_dir = _copy(run, tmp_path)
    damage(model_dir)
    with pytest.raises(DeltaError, match=reason):
        materialize(model_dir, 7, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_materialize_command(run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["materialize", "--model-dir", str(run["model_dir"]), "--model-version", "4", "--out", str(out), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"version": 4, "path": str(out), "export": "delta", "base": 1, "chain": [2, 3, 4]}
    assert (out / "saved_model.pb").is_file()
    # a version that is not there: the model directory cannot be used (exit 2); a chain that does not
    # apply: the run failed (exit 1); one line each
    assert main(["materialize", "--model-dir", str(run["model_dir"]), "--model-version", "99"]) == 2
    assert "version 99 is not in" in capsys.readouterr().err
    model_dir = _copy(run, tmp_path)
    _corrupt_payload(model_dir)
    assert main(["materialize", "--model-dir", str(model_dir), "--model-version", "4", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "fails its checksum" in err and len(err.strip().splitlines()) == 1


def test_retention_keeps_what_a_kept_chain_needs(run: dict[str, Any], tmp_path: Path) -> None:
    model_dir = _copy(run, tmp_path)
    removed = VersionStore(model_dir, keep=2).prune(protected=set())
    # kept: the newest two (12 full, 13 its delta); and for no kept delta of the first chain, none of it
    assert VersionStore(model_dir, keep=2).on_disk() == [FULL_EVERY + 2, FULL_EVERY + 3]
    assert removed == list(range(1, FULL_EVERY + 2))
    model_dir = _copy(run, tmp_path / "again")
    VersionStore(model_dir, keep=2).prune(protected={5})  # a kept delta (the current one, say): its chain stays
    assert VersionStore(model_dir, keep=2).on_disk() == [1, 2, 3, 4, 5, FULL_EVERY + 2, FULL_EVERY + 3]
    assert materialize(model_dir, 5, tmp_path / "out") == tmp_path / "out"


@pytest.mark.parametrize("model", ["two_tower", "dual_dnn"])
def test_the_other_models_chains_give_their_full_exports(model: str, tmp_path: Path) -> None:
    """The two tower's export holds its table pruned (made whole again to apply a delta, pruned again to
    export); the dual DNN's serves the student (the teacher's variables are in no export or delta)."""
    samples, _ = make_samples(impressions=2500, users=120, items=40, seed=6)
    table = SampleTable([parse_sample(s) for s in samples])
    config = TrainerConfig.load(None, {"model.name": model, "model.embedding_dim": 4, "model.hidden_units": [8],
                                       "features.vocab.capacity": 64})
    state = TrainerState.create(config, table)
    prepared = state.prepare(table)
    store = VersionStore(tmp_path / "model", keep=10)
    deltas = DeltaExports(store.model_dir, enabled=True, full_every=FULL_EVERY)
    for version, start in enumerate(range(0, 768, 256), start=1):
        rows = np.arange(start, start + 256)
        state.train_and_score(state.encode(prepared, rows), targets(table, rows, None))
        assert store.export(state, version, deltas).kind == ("full" if version == 1 else "delta")
    export_state(state, tmp_path / "reference")
    out = materialize(store.model_dir, 3, tmp_path / "out")
    test = SampleTable([parse_sample(s) for s in samples[-400:]])
    assert np.array_equal(ExportedModel(out).predict(test), ExportedModel(tmp_path / "reference").predict(test))
    assert _meta(out) == _meta(tmp_path / "reference")
    served = {e["path"] for v in (2, 3) for e in json.loads((store.model_dir / str(v) / DELTA_DIR / MANIFEST)
                                                              .read_text())["variables"]}
    if model == "dual_dnn":
        teacher = ("/wide/", "/teacher_mlp/", "/cross", "/hint/")  # the teacher's parts and the projection
        assert served and not any(part in path for path in served for part in teacher), served


def test_the_bytes_benchmark_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.bench import delta as bench

    config = tmp_path / "trainer.yaml"
    config.write_text("model:\n  hidden_units: [8]\nsidecar:\n  vocab_capacity: 256\n  batch:\n    size: 64\n")
    out = tmp_path / "bench.json"
    # 30 s of impressions at 200/s; their NEGATIVEs come out a minute later: 90 s of stream
    argv = ["--minutes", "0.5", "--rate", "200", "--intervals", "5s", "15s", "--warmup", "0s", "--users", "2000",
            "--items", "100", "--config", str(config), "--json", str(out)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    every_5s, every_15s = result["results"]
    assert every_5s["deltas"] >= 10 and every_15s["deltas"] >= 4
    assert every_5s["samples_per_delta"] < every_15s["samples_per_delta"]
    assert 0 < every_5s["delta_bytes"]["median"] < every_15s["delta_bytes"]["median"] < every_5s["full_bytes"]
    assert result["model"]["vocab_capacity"] == 256 and result["traffic"]["impressions"] == 6000
    printed = capsys.readouterr()
    assert "| 5 s |" in printed.out and "| 15 s |" in printed.out
    assert "bench: generating 6,000 impressions" in printed.err


def test_a_vocabulary_that_grows_starts_a_new_chain(tmp_path: Path) -> None:
    """Under features.vocab.memory_budget_mb a full field doubles and the model is laid out again: the
    served variables change shape, so the next version is a full export, and the chains on either side
    still give their full exports."""
    samples, _ = make_samples(impressions=3000, users=400, items=30, seed=9)
    table = SampleTable([parse_sample(s) for s in samples])
    config = TrainerConfig.load(None, {"model.embedding_dim": 4, "model.hidden_units": [8],
                                       "features.vocab.capacity": 32, "features.vocab.admit_after": 1,
                                       "features.vocab.memory_budget_mb": 64})
    state = TrainerState.create(config, table)
    prepared = state.prepare(table)
    store = VersionStore(tmp_path / "model", keep=20)
    deltas = DeltaExports(store.model_dir, enabled=True, full_every=FULL_EVERY)
    kinds, capacities = [], []
    for version, start in enumerate(range(0, 2048, 256), start=1):
        rows = np.arange(start, start + 256)
        state.train_and_score(state.encode(prepared, rows), targets(table, rows, None))
        kinds.append(store.export(state, version, deltas).kind)
        capacities.append(dict(state.spec.tracked)["user_id"])
        if version == 8:
            export_state(state, tmp_path / "reference")
    # the user field grew before version 1 (32 -> 256 slots) and again before version 2 (-> 512)
    assert capacities == [256, *[512] * 7]
    assert kinds == ["full", "full", *["delta"] * 6]
    out = materialize(store.model_dir, 8, tmp_path / "out")  # the chain from the grown version 2
    test = SampleTable([parse_sample(s) for s in samples[-300:]])
    assert np.array_equal(ExportedModel(out).predict(test), ExportedModel(tmp_path / "reference").predict(test))
