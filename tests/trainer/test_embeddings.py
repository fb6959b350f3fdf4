"""``python -m trainer embeddings``: the vocabularies of real exports and checkpoints, read from disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from trainer.__main__ import main
from trainer.embeddings import log2_histogram
from trainer.samples import LATE_POSITIVE, SampleTable, read_samples

ROOT = Path(__file__).resolve().parents[2]


def embeddings_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert main(["embeddings", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def failure(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["embeddings", *argv])
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    return code, err.strip()


@pytest.fixture
def model_dir(tmp_path: Path, exported: Path, data_dir: Path) -> Path:
    """The sidecar's layout: versions 3 (current) and 4 (its step marked 999), and checkpoints/."""
    base = tmp_path / "click"
    for version in (3, 4):
        shutil.copytree(exported, base / str(version))
    meta_path = base / "4" / "assets.extra" / "trainer.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "step": 999}))
    (base / "current.json").write_text(json.dumps({"current": 3}))
    shutil.copytree(data_dir / "ckpt-pu", base / "checkpoints")
    return base


def test_the_figures_are_the_training_impressions(exported: Path, train_file: Path, capsys) -> None:
    """fit's one epoch sighted every impression once (a LATE_POSITIVE is not a sighting): each field's
    admitted and pending IDs hold exactly the per-ID tally of the training file."""
    data = embeddings_json(capsys, "--model-dir", str(exported), "--top", "3")
    assert data["source"] == {"kind": "export", "path": str(exported), "version": None, "why": ""}
    meta = json.loads((exported / "assets.extra" / "trainer.json").read_text())
    assert data["step"] == meta["step"] > 0
    assert [f["field"] for f in data["fields"]] == [f for f, _ in meta["spec"]["tracked"]]
    table = SampleTable(read_samples([train_file])[0])
    impressions = table.attributions != LATE_POSITIVE
    for report in data["fields"]:
        tally = Counter(table.column(report["field"])[impressions].tolist())
        admitted = {k: n for k, n in tally.items() if n >= report["admit_after"]}
        assert report["admitted"] == len(admitted) and report["pending"] == len(tally) - len(admitted)
        assert report["sightings"] == sum(admitted.values())
        assert report["pending_sightings"] == sum(tally.values()) - sum(admitted.values())
        assert sum(b["ids"] for b in report["histogram"]) == report["admitted"]
        assert report["evicted"] == report["refused"] == report["displaced"] == report["forgotten"] == 0
        most = sorted(admitted.values(), reverse=True)[:3]
        assert [t["sightings"] for t in report["top"]] == most
        assert all(admitted[t["id"]] == t["sightings"] for t in report["top"])
        assert report["oldest_idle_steps"] == data["step"] - report["oldest_last_seen_step"] >= 0


def test_a_checkpoint_directory_holds_the_same_vocabulary(exported: Path, data_dir: Path, capsys) -> None:
    from_export = embeddings_json(capsys, "--model-dir", str(exported))
    from_checkpoint = embeddings_json(capsys, "--model-dir", str(data_dir / "ckpt-pu"))
    assert from_checkpoint["source"] == {"kind": "checkpoint", "path": str(data_dir / "ckpt-pu"), "version": None,
                                         "why": ""}
    assert from_checkpoint["step"] == from_export["step"]
    assert from_checkpoint["fields"] == from_export["fields"]


def test_the_sidecar_layout_current_version_or_checkpoint(model_dir: Path, capsys) -> None:
    current = embeddings_json(capsys, "--model-dir", str(model_dir))
    assert current["source"] == {
        "kind": "export", "path": str(model_dir / "3"), "version": 3, "why": "the current version",
    }
    assert embeddings_json(capsys, "--model-dir", str(model_dir), "--model-version", "4")["step"] == 999
    checkpoint = embeddings_json(capsys, "--model-dir", str(model_dir), "--checkpoint")
    assert checkpoint["source"]["path"] == str(model_dir / "checkpoints")
    (model_dir / "current.json").unlink()  # nothing published yet: the checkpoint, saying so
    fallback = embeddings_json(capsys, "--model-dir", str(model_dir))
    assert fallback["source"]["kind"] == "checkpoint" and "no current version" in fallback["source"]["why"]
    assert fallback["fields"] == checkpoint["fields"] == current["fields"]


def test_the_text_report(model_dir: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["embeddings", "--model-dir", str(model_dir), "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"version 3's export {model_dir / '3'} (the current version), step ")
    for field in ("user_id", "item_id"):
        assert f"\n{field}: " in text
    assert "sightings of admitted IDs:" in text and "most seen: " in text and "oldest last seen: step " in text


def test_an_export_from_before_the_sightings_still_reads(model_dir: Path, capsys) -> None:
    meta_path = model_dir / "3" / "assets.extra" / "trainer.json"
    meta = json.loads(meta_path.read_text())
    meta["vocab"]["format"] = 1
    for field in meta["vocab"]["fields"].values():
        del field["sightings"]
    meta_path.write_text(json.dumps(meta))
    data = embeddings_json(capsys, "--model-dir", str(model_dir))
    for report in data["fields"]:  # each admitted ID at admit_after, the fewest it can have had
        assert report["histogram"] == log2_histogram(np.full(report["admitted"], report["admit_after"]))


def test_one_line_errors(model_dir: Path, tmp_path: Path, capsys) -> None:
    prog = "python -m trainer embeddings: error:"
    assert failure(capsys, "--model-dir", str(tmp_path / "nope")) == (
        2, f"{prog} model directory {tmp_path / 'nope'} does not exist"
    )
    (tmp_path / "empty").mkdir()
    code, err = failure(capsys, "--model-dir", str(tmp_path / "empty"))
    assert code == 2 and "holds no current version (current.json), export or checkpoint" in err
    assert failure(capsys, "--model-dir", str(model_dir), "--model-version", "9") == (
        2, f"{prog} version 9 is not an export in {model_dir} (versions on disk: 3, 4)"
    )
    assert failure(capsys, "--model-dir", str(tmp_path / "empty"), "--checkpoint")[0] == 2
    assert failure(capsys)[1] == f"{prog} give --model-dir DIR (or --config YAML naming sidecar.model_dir)"
    (model_dir / "3" / "assets.extra" / "trainer.json").write_text("{")
    code, err = failure(capsys, "--model-dir", str(model_dir))
    assert code == 1 and err.startswith(f"{prog} {model_dir / '3' / 'assets.extra' / 'trainer.json'} is not valid")


def test_log2_buckets() -> None:
    assert log2_histogram(np.array([1, 2, 3, 4, 9, 0])) == [
        {"from": 1, "to": 1, "ids": 1}, {"from": 2, "to": 3, "ids": 2},
        {"from": 4, "to": 7, "ids": 1}, {"from": 8, "to": 15, "ids": 1},
    ]
    assert log2_histogram(np.array([], np.int64)) == []


def test_the_command_follows_the_conventions() -> None:
    from tests.test_cli_conventions import (
        TRAINER,
        Command,
        all_helps,
        check_bad_values,
        check_defaults_shown,
        check_own_help,
        check_spellings,
        check_version,
    )

    command = Command(TRAINER.name, TRAINER.module, (("embeddings",),))
    for _, sub, parsed in all_helps((command,)):
        check_own_help(parsed)
        check_version(command, sub, parsed)
        check_defaults_shown(parsed)
        check_bad_values(command, sub, parsed)
        check_spellings(parsed)


def test_an_export_is_read_without_tensorflow(exported: Path) -> None:
    """Only a checkpoint needs TensorFlow: an export's vocabulary is JSON beside it."""
    probe = (
        "import contextlib, io, sys\n"
        "from trainer.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['embeddings', '--model-dir', {str(exported)!r}, '--json'])\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.strip() == "0 False", done.stderr


# -- unadmitted IDs serve the default row ------------------------------------------------------------


def test_unadmitted_and_evicted_ids_serve_the_oov_row(exported: Path, train_file: Path, tmp_path: Path) -> None:
    """Through the exported serving signature: an ID never admitted and an evicted one score alike,
    exactly as the model scores the field's OOV row (slot 0), and unlike an admitted ID."""
    import tensorflow as tf

    from trainer.config import TrainerConfig
    from trainer.export import export_state
    from trainer.features import serving_inputs, signature_name
    from trainer.warm_start import warm_start

    state = warm_start(exported, TrainerConfig())
    field = "sparse.city"  # in no cross (crosses hash raw values, admitted or not): its rows alone decide
    vocab = state.vocabs[field]
    keys, _ = vocab.items()
    kept, evicted = keys[:-1], keys[-1]
    later = state.step + 100
    vocab.lookup(kept, later)  # seen again; the last one is idle
    vocab.evict_after = 50
    vocab.evict_idle(later)
    assert evicted not in vocab and vocab.evicted == 1
    export = export_state(state, tmp_path / "export")

    cities = [evicted, "never-admitted", "", kept[0]]
    table = SampleTable(read_samples([train_file])[0][:1] * len(cities))
    inputs = serving_inputs(state.spec, table)
    inputs[signature_name(field)] = np.asarray(cities, object)
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in inputs.items()})["probability"].numpy()
    assert served[0] == served[1] == served[2] != served[3]

    batch = state.encoder.peek(state.prepare(table), np.arange(len(cities)))
    column = [f for f, _ in state.spec.tracked].index(field)
    batch.ids[:, column] = [0, 0, 0, vocab.slot(kept[0])]
    expected = tf.sigmoid(state.outputs(batch)["logit"]).numpy()  # pu: identity calibration
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model", ["wide_deep", "two_tower"])
def test_the_oov_rows_start_like_the_admitted_rows(model: str, train_file: Path) -> None:
    """One initializer over each whole table: the OOV rows are drawn like the rest (``zeros`` tables
    stay zero everywhere), not special-cased."""
    from trainer.config import TrainerConfig
    from trainer.state import TrainerState

    config = TrainerConfig.load(None, {"model.name": model})
    state = TrainerState.create(config, SampleTable(read_samples([train_file])[0]))
    oov_rows = state.spec.base_offsets[: len(state.spec.tracked)]
    scale = config.model.init_stddev
    for variable, init in state.model.row_tables():
        values = np.asarray(variable.numpy())
        oov = values[oov_rows]
        if init == "zeros":
            assert not values.any()
            continue
        assert np.all(oov != 0) and 0.5 * scale < oov.std() < 1.5 * scale
        assert 0.5 * scale < values.std() < 1.5 * scale
