"""``trainer serving-config``: the TF Serving model config follows the registry's current version.

TF Serving itself cannot be installed here (no tensorflow-model-server package for this platform's
pip, no network for its apt repository), so the test does what it would: reads the config's base path
and version, loads that version with ``tf.saved_model.load`` and calls ``serving_default`` with a
sample's fields under the signature's input names (docs/serving.md), and gets the trainer's own
prediction for that sample.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from trainer import serving
from trainer.sidecar.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "odl:test-serving:click"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serving.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args([serving.COMMAND, *argv])


def _selected(config: str) -> tuple[str, int]:
    """(base_path, version) of a one-model config, read as TF Serving reads the fields."""
    base_path = re.search(r'base_path: "((?:[^"\\]|\\.)*)"', config)
    versions = re.findall(r"specific \{\s*versions: (\d+)\s*\}", config)
    assert base_path and len(versions) == 1, config
    return base_path.group(1), int(versions[0])


@pytest.fixture
def model_dir(tmp_path: Path, exported: Path, redis_url: str) -> Path:
    """Versions 3, 4 and 7 on disk; 3 and 4 published (4 current), 7 refused: the highest is not served."""
    from trainer.sidecar.registry import Registry, write_registry_file
    from trainer.sidecar.versions import VersionStore

    base = tmp_path / "models" / "click"
    for version in (3, 4, 7):
        shutil.copytree(exported, base / str(version))
    write_registry_file(base, PREFIX)
    registry = Registry(redis_url, PREFIX, VersionStore(base, 5))
    registry.client.delete(registry.versions_key, registry.current_key)
    try:
        for version in (3, 4):
            registry.publish({"version": version, "status": "published"})
        registry.add({"version": 7, "status": "refused", "reasons": ["auc below the floor"]})
    finally:
        registry.close()
    return base


def _signature_inputs(sample: dict[str, Any], fields: dict[str, str], specs: dict[str, Any]) -> dict[str, Any]:
    """A sample's fields under the signature's input names, as a TF Serving client sends them:
    ``context.page`` -> ``context_page`` and so on; a key the sample lacks is empty (0.0 when dense)."""
    import tensorflow as tf

    inputs = {}
    for name, spec in specs.items():
        group, _, key = fields[name].partition(".")
        value = sample[group] if not key else sample[group].get(key, 0.0 if group == "dense" else "")
        inputs[name] = tf.constant([value], dtype=spec.dtype)
    return inputs


def test_the_config_serves_the_current_version_and_it_scores(model_dir: Path, redis_url: str,
                                                              train_file: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    from trainer.export import ExportedModel
    from trainer.samples import SampleTable, parse_sample

    out = tmp_path / "serving" / "models.config"
    assert serving.run(_args("--model-dir", str(model_dir), "--redis-url", redis_url, "--name", "click",
                             "--out", str(out))) == 0
    base_path, version = _selected(out.read_text())
    assert (base_path, version) == (str(model_dir.resolve()), 4)  # not 7, the highest on disk
    assert 'name: "click"' in out.read_text() and 'model_platform: "tensorflow"' in out.read_text()

    served = Path(base_path) / str(version)
    function = tf.saved_model.load(str(served)).signatures["serving_default"]
    specs = dict(function.structured_input_signature[1])
    fields = json.loads((served / "assets.extra" / "trainer.json").read_text())["signature"]
    sample = json.loads(train_file.read_text().splitlines()[0])
    probability = float(function(**_signature_inputs(sample, fields, specs))["probability"].numpy()[0])
    expected = float(ExportedModel(served).predict(SampleTable([parse_sample(sample)]))[0])
    assert 0.0 < probability < 1.0
    assert probability == pytest.approx(expected, abs=1e-6)

    # the inputs docs/serving.md names against the sample fields are the export's
    doc = (ROOT / "docs" / "serving.md").read_text()
    for name, field in fields.items():
        assert f"`{field}`" in doc and f"`{name}`" in doc, (name, field)


def test_the_config_follows_a_rollback(model_dir: Path, redis_url: str) -> None:
    from trainer.sidecar.registry import Registry, read_registry_file
    from trainer.sidecar.versions import VersionStore

    registry = Registry(redis_url, read_registry_file(model_dir), VersionStore(model_dir, 5))
    try:
        registry.rollback(reason="test")
    finally:
        registry.close()
    args = _args("--model-dir", str(model_dir), "--redis-url", redis_url, "--base-path", "/models/click")
    out = model_dir.parent / "after-rollback.config"
    args.out = str(out)
    assert serving.run(args) == 0
    assert _selected(out.read_text()) == ("/models/click", 3)


def test_the_disk_pointer_wins_over_a_redis_that_missed_a_change(
    model_dir: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    redis.Redis.from_url(redis_url).set(f"{PREFIX}:current", "3")  # Redis behind the disk's current.json (4)
    out = model_dir.parent / "disagree.config"
    with caplog.at_level(logging.WARNING, logger="trainer"):
        assert serving.run(_args("--model-dir", str(model_dir), "--redis-url", redis_url, "--out", str(out))) == 0
    assert _selected(out.read_text())[1] == 4
    assert any("registry rebuild" in r.getMessage() for r in caplog.records)


def test_without_redis_the_pointer_on_disk_is_served(model_dir: Path, caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert serving.run(_args("--model-dir", str(model_dir))) == 0  # no Redis named: the disk only
    assert _selected(capsys.readouterr().out)[1] == 4
    with caplog.at_level(logging.WARNING, logger="trainer"):  # a Redis that does not answer: a warning
        assert serving.run(_args("--model-dir", str(model_dir), "--redis-url", "redis://127.0.0.1:1/0")) == 0
    assert _selected(capsys.readouterr().out)[1] == 4
    assert any("unreachable" in r.getMessage() for r in caplog.records)


def test_nothing_published_is_a_one_line_error(tmp_path: Path, exported: Path) -> None:
    empty = tmp_path / "models" / "click"
    shutil.copytree(exported, empty / "1")  # exported, never published: no pointer
    with pytest.raises(serving.ServingError, match="nothing was published") as error:
        serving.run(_args("--model-dir", str(empty)))
    assert "\n" not in str(error.value)
    (empty / "current.json").write_text('{"current": 2}')
    with pytest.raises(serving.ServingError, match="version 2 is not a SavedModel"):
        serving.run(_args("--model-dir", str(empty)))
    with pytest.raises(serving.ServingError, match="does not exist"):
        serving.run(_args("--model-dir", str(tmp_path / "nowhere")))
    with pytest.raises(UsageError, match="--model-dir"):
        serving.run(_args())


def test_names_and_paths_are_quoted_for_the_text_format() -> None:
    config = serving.model_config('a"b', "C:\\models\\x", 12)
    assert 'name: "a\\"b"' in config and 'base_path: "C:\\\\models\\\\x"' in config
    assert re.findall(r"versions: (\d+)", config) == ["12"]
