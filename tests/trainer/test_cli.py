"""`python -m trainer fit` / `evaluate` end to end on small synthetic files (CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from trainer.__main__ import main
from trainer.config import TrainerConfig
from trainer.export import ExportedModel, export_state
from trainer.samples import SampleTable, read_samples
from trainer.state import TrainerState
from trainer.warm_start import warm_start

ROOT = Path(__file__).resolve().parents[2]


def evaluate_json(model: Path, samples: Path, capsys, *flags: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--samples", str(samples), "--json", "--quiet", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_export_evaluate(exported: Path, test_file: Path, capsys) -> None:
    assert (exported / "saved_model.pb").is_file()
    assert not list(exported.parent.glob(".model-pu.tmp-*"))  # the temporary directory was renamed away
    report = evaluate_json(exported, test_file, capsys)
    rows = [json.loads(line) for line in test_file.open()]
    impressions = {row["impression_id"] for row in rows}
    assert report["per"] == "impression" and report["samples_read"] == len(rows)
    assert report["count"] == len(impressions)
    assert report["positives"] == len({row["impression_id"] for row in rows if row["label"] == 1})
    per_sample = evaluate_json(exported, test_file, capsys, "--per", "sample")
    assert per_sample["count"] == len(rows) and per_sample["positives"] == sum(row["label"] for row in rows)
    assert {"count", "auc", "logloss", "prediction_bias", "rce"} <= set(report)
    assert 0.5 < report["auc"] <= 1.0 and 0.0 < report["logloss"] < 1.0
    assert 0.5 < report["prediction_bias"] < 2.0


def test_serving_signature_takes_feature_fields_by_name(exported: Path, test_file: Path) -> None:
    loaded = tf.saved_model.load(str(exported))
    serve = loaded.signatures["serving_default"]
    names = set(serve.structured_input_signature[1])
    assert names == {"user_id", "item_id", "position", "context_page", "sparse_city", "dense_u_ctr_7d"}
    out = serve(
        user_id=tf.constant(["u0001", "never-seen"]),
        item_id=tf.constant(["v0002", "v0003"]),
        position=tf.constant([0, 3], tf.int64),
        context_page=tf.constant(["feed", "search"]),
        sparse_city=tf.constant(["c1", ""]),
        dense_u_ctr_7d=tf.constant([0.1, 0.0]),
    )
    probability = out["probability"].numpy()
    assert probability.shape == (2,) and ((probability > 0) & (probability < 1)).all()


@pytest.mark.parametrize("loss", ["naive", "fnc", "esdfm", "defer"])
def test_served_probability_is_the_models_with_calibration(loss: str, train_file: Path, tmp_path: Path) -> None:
    config = TrainerConfig.load(None, {"loss.name": loss})
    table = SampleTable(read_samples([train_file])[0])
    state = TrainerState.create(config, table)
    prepared = state.prepare(table)
    rows = np.arange(len(table))
    for start in range(0, 512, 128):
        batch = rows[start : start + 128]
        state.train_on_batch(
            state.encode(prepared, batch),
            {
                "label": table.labels[batch],
                "attribution": table.attributions[batch],
                "teacher": np.zeros(len(batch), np.float32),
            },
        )
    b = 1.0 / (1.0 + np.exp(-state.logits(state.encoder.peek(prepared, rows))))
    served = ExportedModel(export_state(state, tmp_path / "m")).predict(table)
    expected = np.minimum(b, 0.999 / 1.999) / (1 - np.minimum(b, 0.999 / 1.999)) if loss == "fnc" else b
    np.testing.assert_allclose(served, expected, rtol=2e-5, atol=1e-7)


@pytest.mark.slow
def test_fit_is_deterministic_under_seed(train_file: Path, test_file: Path, tmp_path: Path, fast_args) -> None:
    def fitted(name: str, seed: str) -> np.ndarray:
        export = tmp_path / name
        assert main(["fit", "--samples", str(train_file), "--export", str(export), "--seed", seed, *fast_args]) == 0
        return ExportedModel(export).predict(SampleTable(read_samples([test_file])[0]))

    a, b, c = fitted("a", "11"), fitted("b", "11"), fitted("c", "12")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_warm_start_restores_weights_and_vocabulary(exported: Path, data_dir: Path, test_file: Path) -> None:
    table = SampleTable(read_samples([test_file])[0])
    served = ExportedModel(exported).predict(table)
    for source in (exported, data_dir / "ckpt-pu"):
        state = warm_start(source, TrainerConfig())
        prepared = state.prepare(table)
        logits = state.logits(state.encoder.peek(prepared, np.arange(len(table))))
        np.testing.assert_allclose(1 / (1 + np.exp(-logits)), served, rtol=1e-5, atol=1e-7)


def test_a_warm_start_from_an_export_starts_the_weight_average_at_the_loaded_weights(exported: Path) -> None:
    """The deep optimizer's moving average (swapped in at the end of a shuffled fit) begins at the
    export's weights, not at the initialisation the model was built with."""
    state = warm_start(exported, TrainerConfig())
    optimizer = state.model.deep_optimizer
    assert optimizer.use_ema
    for variable in state.model.deep_variables:
        average = optimizer._model_variables_moving_average[optimizer._get_variable_index(variable)]
        np.testing.assert_array_equal(np.asarray(average.value), np.asarray(variable.value), err_msg=variable.path)


@pytest.mark.slow
def test_warm_start_and_distillation_through_the_cli(
    exported: Path, train_file: Path, test_file: Path, tmp_path: Path, fast_args, capsys
) -> None:
    table = SampleTable(read_samples([test_file])[0])
    teacher = ExportedModel(exported).predict(table)
    gaps = {}
    for weight in ("0", "20"):
        out = tmp_path / f"student-{weight}"
        args = [
            "fit",
            "--samples",
            str(train_file),
            "--export",
            str(out),
            "--loss",
            "naive",
            "--seed",
            "4",
            "--distill-from",
            str(exported),
            "--distill-weight",
            weight,
            *fast_args,
        ]
        assert main(args) == 0
        gaps[weight] = float(np.mean(np.abs(ExportedModel(out).predict(table) - teacher)))
    assert gaps["20"] < gaps["0"]  # a heavy distillation weight pulls the student toward the teacher
    warm = tmp_path / "warm"
    assert (
        main(["fit", "--samples", str(train_file), "--export", str(warm), "--warm-start", str(exported), *fast_args])
        == 0
    )
    assert evaluate_json(warm, test_file, capsys)["count"] == len(table)


def test_progress_and_device_are_logged(train_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["fit", "--samples", str(train_file), "--export", str(tmp_path / "m"), "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert "device: CPU" in captured.err or "device: GPU" in captured.err
    assert "epoch 1/1 step" in captured.err and "exported to" in captured.err
    summary = json.loads(captured.out)
    assert summary["samples"] > 0 and summary["steps"] > 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        # the conventions (common.cli): an input or model directory that cannot be used is exit 2, like a bad flag
        (["fit", "--samples", "{missing}", "--export", "{out}"], 2, "fit: error: cannot read samples file"),
        (["fit", "--samples", "{garbage}", "--export", "{out}"], 2, "holds no usable sample"),
        (["fit", "--samples", "{empty}", "--export", "{out}"], 2, "holds no samples"),
        (["fit", "--samples", "{train}", "--loss", "magic", "--export", "{out}"], -2, "fit: error: --loss: invalid"),
        (["fit", "--samples", "{train}", "--epochs", "0", "--export", "{out}"], -2, "--epochs: expected a positive"),
        (["fit", "--samples", "{train}"], 2, "--export"),
        (["fit", "--samples", "{train}", "--export", "{out}", "--distill-weight", "1"], 2, "--distill-from"),
        (["fit", "--samples", "{train}", "--export", "{out}", "--config", "{missing}"], 2, "cannot read config"),
        (["fit", "--samples", "{train}", "--export", "{out}", "--warm-start", "{empty_dir}"], 2, "not a trainer"),
        (["evaluate", "--model", "{empty_dir}", "--samples", "{train}"], 2, "holds no SavedModel"),
        (["evaluate", "--model", "{missing}", "--samples", "{train}"], 2, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(argv, code, message, train_file: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "garbage.bin").write_bytes(b"\x00\xffnot samples\n\x01\x02")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "empty_dir").mkdir()
    paths = {
        "missing": tmp_path / "missing.jsonl",
        "garbage": tmp_path / "garbage.bin",
        "train": train_file,
        "empty": tmp_path / "empty.jsonl",
        "out": tmp_path / "out",
        "empty_dir": tmp_path / "empty_dir",
    }
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    # -2: argparse's own refusal (SystemExit 2) rather than main's return value 2
    with pytest.raises(SystemExit) if code == -2 else _no_raise() as raised:
        result = main([*argv, "--quiet"] if argv[0] == "fit" else argv)
    result = raised.value.code if code == -2 else result
    err = capsys.readouterr().err.strip()
    assert result == abs(code)
    assert len(err.splitlines()) == 1 and err.startswith(f"python -m trainer {argv[0]}: error: ") and message in err
    assert not (tmp_path / "out").exists()  # nothing half-written


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow
def test_real_process_bad_file_and_help(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not json\n")
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "fit", "--samples", str(bad), "--export", str(tmp_path / "m")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("python -m trainer fit: error: samples file")
    help_out = subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert help_out.returncode == 0 and "--json" in help_out.stdout


def test_config_file_with_flags_on_top(train_file: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "trainer.yaml"
    config.write_text("fit:\n  epochs: 3\n  batch_size: 512\nloss:\n  name: fnw\nfeatures:\n  crosses: []\n")
    assert (
        main(
            [
                "fit",
                "--samples",
                str(train_file),
                "--export",
                str(tmp_path / "m"),
                "--config",
                str(config),
                "--epochs",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1  # the flag wins over the file
    meta = json.loads((tmp_path / "m" / "assets.extra" / "trainer.json").read_text())
    assert meta["loss"] == "fnw" and meta["config"]["fit"]["batch_size"] == 512 and meta["spec"]["crosses"] == []
    config.write_text("fit:\n  epoch: 3\n")  # a typo is an error, not a silent default
    assert main(["fit", "--samples", str(train_file), "--export", str(tmp_path / "m2"), "--config", str(config)]) == 2
    assert "fit.epoch" in capsys.readouterr().err
