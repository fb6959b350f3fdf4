"""The shipped configs of the join and the trainer agree where one depends on the other.

The PU correction's pending-click estimate assumes LATE_POSITIVEs stop at the join's horizon, and the
sidecar's dedup must remember a sample at least that long; the two live in different files (and
deployables). A deployment's own files are checked at the sidecar's start against what its join
published (trainer/sidecar/join_contract.py); the shipped ones are held to it here, and to the one
set of defaults (common/defaults.py, common/topics.py): a `make up` stack, or the compose stack from
the host, is found by both halves without a flag.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from common import defaults, topics
from infra.demo.plan import DemoPlan
from jobs.config import SampleJoinConfig
from trainer.config import TrainerConfig

ROOT = Path(__file__).resolve().parents[2]
JOIN_YAML, TRAINER_YAML = ROOT / "infra" / "sample_join.yaml", ROOT / "infra" / "trainer.yaml"
COMPOSE = ROOT / "infra" / "docker-compose.yml"
ADDRESS_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "MODEL_DIR")


def _join_horizon_ms(task: str) -> int:
    join = SampleJoinConfig.load(JOIN_YAML).join
    return next(t.horizon for t in join.tasks if t.name == task)


def _demo_horizon_ms() -> int:
    """The horizon the demo runs its join with (every demo plan has the same)."""
    return next(f.default for f in dataclasses.fields(DemoPlan) if f.name == "horizon_ms")  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("trainer_config", "join_horizon_ms"),
    [
        ("infra/trainer.yaml", lambda task: _join_horizon_ms(task)),
        ("infra/demo/trainer.yaml", lambda task: _demo_horizon_ms()),
    ],
    ids=["deployment", "demo"],
)
def test_the_trainer_corrects_for_the_horizon_the_join_runs_with(trainer_config, join_horizon_ms) -> None:
    config = TrainerConfig.load(ROOT / trainer_config)
    horizon = join_horizon_ms(config.sidecar.task)
    assert config.loss.attribution_horizon_ms == horizon, (
        f"{trainer_config}: loss.attribution_horizon_ms is {config.loss.attribution_horizon_ms} ms, "
        f"the join's horizon for task {config.sidecar.task} is {horizon} ms"
    )
    assert config.sidecar.dedup.horizon >= horizon, f"{trainer_config}: dedup forgets samples before the horizon"


def test_the_shipped_configs_find_the_make_up_stack_without_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ADDRESS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    join, trainer = SampleJoinConfig.load(JOIN_YAML), TrainerConfig.load(TRAINER_YAML).sidecar
    assert join.kafka.bootstrap_servers == trainer.kafka.bootstrap_servers == defaults.LOCAL_KAFKA_BOOTSTRAP
    assert join.redis.url == trainer.redis.url == defaults.LOCAL_REDIS_URL
    # the code's defaults (a config file without these sections) are the same stack
    bare_join, bare_trainer = SampleJoinConfig.load(None), TrainerConfig.load(None).sidecar
    assert bare_join.kafka.bootstrap_servers == bare_trainer.kafka.bootstrap_servers == defaults.LOCAL_KAFKA_BOOTSTRAP
    assert bare_join.redis.url == bare_trainer.redis.url == defaults.LOCAL_REDIS_URL
    # a fresh clone, any user: the models go under the checkout's state folder, beside the stack's data
    assert not trainer.model_dir.is_absolute() and trainer.model_dir.parts[0] == ".state"


def test_the_environment_points_both_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/2")
    for config in (TrainerConfig.load(TRAINER_YAML), TrainerConfig.load(None)):
        assert config.sidecar.kafka.bootstrap_servers == "k1:9092,k2:9092"
        assert config.sidecar.redis.url == "redis://r:6379/2"


def test_the_shipped_topics_are_the_shared_names() -> None:
    join, trainer = SampleJoinConfig.load(JOIN_YAML), TrainerConfig.load(TRAINER_YAML).sidecar
    assert trainer.topic == join.kafka.topics.samples(trainer.task) == topics.samples_topic(trainer.task)
    assert trainer.kafka.deadletter_topic == join.kafka.topics.deadletter == topics.DEADLETTER_TOPIC
    created = set(yaml.safe_load((ROOT / "infra" / "topics.yaml").read_text())["topics"])
    assert {topics.IMPRESSIONS_TOPIC, topics.FEATURE_SNAPSHOTS_TOPIC, topics.LABELS_TOPIC, topics.UNMATCHED_TOPIC,
            topics.DEADLETTER_TOPIC, trainer.topic} <= created


def test_compose_publishes_kafka_and_redis_where_the_defaults_look() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert f"127.0.0.1:{defaults.LOCAL_REDIS_PORT}:6379" in services["redis"]["ports"]
    kafka = services["kafka"]
    assert f"127.0.0.1:{defaults.LOCAL_KAFKA_PORT}:{defaults.LOCAL_KAFKA_PORT}" in kafka["ports"]
    assert f"HOST://{defaults.LOCAL_KAFKA_BOOTSTRAP}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"HOST://:{defaults.LOCAL_KAFKA_PORT}" in kafka["environment"]["KAFKA_LISTENERS"]


def test_the_image_and_compose_agree_on_the_model_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile = (ROOT / "infra" / "trainer" / "Dockerfile").read_text()
    image_dir = re.search(r"\bMODEL_DIR=(\S+)", dockerfile)
    assert image_dir is not None
    compose_dir = yaml.safe_load(COMPOSE.read_text())["services"]["trainer"]["environment"]["MODEL_DIR"]
    assert image_dir.group(1) == compose_dir
    assert f"chown app {Path(compose_dir).parent}" in dockerfile  # the volume is the non-root user's
    monkeypatch.setenv("MODEL_DIR", compose_dir)
    assert TrainerConfig.load(TRAINER_YAML).sidecar.model_dir == Path(compose_dir)


def test_both_image_variants_carry_tensorboard() -> None:
    """The image installs the trainer extras (tensorboard among them) and checks the summaries'
    writer imports after the GPU variant swaps TensorFlow."""
    dockerfile = (ROOT / "infra" / "trainer" / "Dockerfile").read_text()
    install = dockerfile.index('pip install ".[trainer]"')
    gpu_swap = dockerfile.index('if [ "$VARIANT" = "gpu" ]')
    check = dockerfile.index('python -c "import tensorboard.summary.v2"')
    assert install < gpu_swap < check
