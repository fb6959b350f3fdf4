"""Pure parts of the sidecar: dedup, batching, retries, config (the gate's parts: test_gate.py and beside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import ConfigError
from trainer.config import TrainerConfig
from trainer.samples import Sample
from trainer.sidecar.batching import Batcher
from trainer.sidecar.consume import Decoded
from trainer.sidecar.dedup import Dedup
from trainer.sidecar.errors import Unavailable, UsageError
from trainer.sidecar.retry import retrying

ROOT = Path(__file__).resolve().parents[3]


def sample(n: int) -> Sample:
    return Sample(f"i{n}:click:NEGATIVE", f"i{n}", "u", "v", 0, {}, {}, {}, 0, 1, 1000 + n)


def test_dedup_drops_repeats_within_the_horizon_and_survives_a_save(tmp_path: Path) -> None:
    dedup = Dedup(horizon_ms=100, max_entries=1000)
    assert not dedup.seen("a", 1_000) and dedup.seen("a", 1_000)
    assert not dedup.seen("b", 1_050)
    dedup.save(tmp_path / "d.json")
    restored = Dedup.load(tmp_path / "d.json", 100, 1000)
    assert restored.seen("a", 1_060) and restored.seen("b", 1_060)
    assert not restored.seen("c", 1_101)  # the clock passes a's horizon: a is forgotten
    assert "a" not in restored and "b" in restored


def test_dedup_is_bounded() -> None:
    dedup = Dedup(horizon_ms=10**9, max_entries=3)
    for n in range(5):
        dedup.seen(str(n), n)
    assert len(dedup) == 3 and dedup.forgotten_early == 2 and "0" not in dedup and "4" in dedup


def test_batches_close_by_size_or_wait_and_carry_positions() -> None:
    batcher = Batcher(size=2, max_wait_s=1.0)
    assert add(batcher, [(sample(0), 0, 10)], now=0.0) == 1
    assert add(batcher, [(None, 1, 7)], now=0.1) == 1  # a dead letter: advances partition 1 only
    assert not batcher.ready(0.5) and batcher.ready(1.0)
    # a poll of three: the batch fills at the second; the rest is for the next one
    assert add(batcher, [(None, 1, 8), (sample(1), 0, 11), (sample(2), 0, 12)], now=0.2) == 2
    assert batcher.ready(0.2)
    batch = batcher.take()
    assert len(batch) == 2 and batch.positions == {0: 12, 1: 9}
    assert batcher.pending == 0 and not batcher.has_positions and not batcher.ready(100.0)


def add(batcher: Batcher, polled: list[tuple[Any, int, int]], now: float, prepared: list[Any] | None = None) -> int:
    """Hand ``polled`` ((sample or None, partition, offset) each) to ``batcher`` as one poll."""
    messages = [Decoded(p, o, s, None, prepared[i] if prepared else None) for i, (s, p, o) in enumerate(polled)]
    return batcher.fill(messages, [s for s, _, _ in polled], 0, now)


def test_retry_recovers_or_gives_up() -> None:
    calls = []
    clock = [0.0]

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ok"

    def sleep(s: float) -> None:
        clock[0] += s

    assert retrying(flaky, "x", (ConnectionError,), 10.0, sleep, lambda: clock[0]) == "ok" and len(calls) == 3

    def down() -> None:
        raise ConnectionError("refused")

    with pytest.raises(Unavailable, match="redis: refused"):
        retrying(down, "redis", (ConnectionError,), 5.0, sleep, lambda: clock[0])


def test_example_config_loads_and_secrets_stay_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = TrainerConfig.load(ROOT / "infra" / "trainer.yaml")
    assert config.sidecar.topic == "samples.click" and config.sidecar.export_interval == 60_000
    monkeypatch.setenv("SECRET_PW", "hunter2")
    # (a SASL protocol with them: the join's rule, one model since, refuses credentials that PLAINTEXT would ignore)
    text = ("sidecar:\n  kafka: {security_protocol: SASL_SSL, sasl_username: me, sasl_password: ${SECRET_PW}}\n"
            "  redis: {password: ${SECRET_PW}}\n")
    file = tmp_path / "secret-trainer.yaml"
    file.write_text(text)
    secret = TrainerConfig.load(file)
    assert secret.sidecar.kafka.client_settings()["sasl.password"] == "hunter2"
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret.model_dump(mode="json"))


def test_bad_sidecar_config_is_one_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("sidecar:\n  batch: {size: 0}\n  export_interval: soon\n")
    with pytest.raises(ConfigError, match=str(path)) as info:
        TrainerConfig.load(path)
    assert "batch.size" in str(info.value) and "export_interval" in str(info.value)


def test_the_sidecar_refuses_defer_whose_second_ingestion_it_does_not_replay() -> None:
    from trainer.sidecar.loop import Sidecar

    with pytest.raises(UsageError, match=r"loss 'defer'.*use it with `fit`"):
        Sidecar(TrainerConfig.load(None, {"loss.name": "defer"}))


def test_a_batch_gathers_the_features_prepared_ahead_across_polls() -> None:
    from synth import make_samples

    from trainer.features import FeatureEncoder, FeatureSpec
    from trainer.samples import SampleTable, parse_sample

    samples = [parse_sample(r) for r in make_samples(30, users=10, items=8, seed=2)[0][:24]]
    config = TrainerConfig.load(None, {"features.vocab.capacity": 64})
    spec = FeatureSpec.from_table(SampleTable(samples), config.features)
    encoder = FeatureEncoder(spec, spec.new_vocabs(1, None))
    polls = [encoder.prepare(SampleTable(samples[:12])), encoder.prepare(SampleTable(samples[12:]))]
    batcher = Batcher(size=100, max_wait_s=1.0)
    dropped = (3, 4, 20)  # repeats the trainer drops: they split the runs of rows
    polled = [(None if n in dropped else s, 0, n) for n, s in enumerate(samples)]
    kept = [s for n, s in enumerate(samples) if n not in dropped]
    add(batcher, polled[:12], 0.0, [(polls[0], n) for n in range(12)])
    add(batcher, polled[12:], 0.0, [(polls[1], n) for n in range(12)])
    batch = batcher.take()
    assert [(r.start, r.end) for r in batch.runs] == [(0, 3), (5, 12), (0, 8), (9, 12)]
    table = SampleTable(kept)
    gathered, direct = batch.prepared(table, spec), encoder.prepare(table)
    assert gathered is not None and gathered.table is table
    for got, want in zip(gathered.tracked, direct.tracked, strict=True):
        assert got.tolist() == want.tolist()
    np.testing.assert_array_equal(gathered.hashed, direct.hashed)
    np.testing.assert_array_equal(gathered.dense, direct.dense)
    other = FeatureSpec.from_table(table, config.features.model_copy(update={"hash_buckets": 7}))
    assert batch.prepared(table, other) is None  # prepared for another layout (a warm start)
    add(batcher, [(samples[0], 0, 40), (samples[1], 0, 41)], 0.0, [None, (polls[0], 1)])
    assert batcher.take().prepared(SampleTable(samples[:2]), spec) is None  # one was not prepared ahead
