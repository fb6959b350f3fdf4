"""`trainer run` end to end against the real broker and Redis, as a subprocess (real TF, CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sidecar_helpers import SidecarEnv, produce, wait_for
from stream import corrupt, stream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def distinct(samples: list[dict[str, Any]]) -> int:
    return len({s["sample_id"] for s in samples})


def position(env: SidecarEnv) -> dict[str, Any] | None:
    path = env.model_dir / "checkpoints" / "sidecar.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def evaluate(model: Path, samples_file: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", "--model", str(model), "--samples", str(samples_file), "--json",
         "--per", "sample"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no TensorFlow chatter
    return json.loads(out.stdout)


def deadletters(bootstrap: str, source_topic: str) -> list[dict[str, Any]]:
    """Dead letters of ``source_topic`` (the deadletter topic is shared by the session's tests)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"dl-{time.time_ns()}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition("deadletter", 0, OFFSET_BEGINNING)])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                break
            continue
        headers = {k: v.decode() for k, v in msg.headers() or []}
        if headers.get("source_topic") == source_topic:
            found.append({"value": msg.value(), "key": msg.key(), **headers})
    consumer.close()
    return found


def test_bounded_run_trains_each_distinct_sample_once(sidecar_env, tmp_path: Path) -> None:
    env: SidecarEnv = sidecar_env()
    samples = stream(1500, seed=1, users=20, items=10)
    positive = next(s for s in samples if s["attribution"] == "POSITIVE")
    bad = dict(positive, label=0)  # decodes, but breaks the Sample contract (a POSITIVE needs label 1)
    produce(env.bootstrap, env.topic, [*samples, *samples[:40], b"not avro", bad])
    result = env.run("--exit-when-idle", "3s")
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stderr.splitlines():  # JSON logs only: no TensorFlow start-up chatter
        json.loads(line)
    summary = json.loads(result.stdout)
    assert summary["samples_trained"] == distinct(samples)
    assert summary["dedup_drops"] == 40 and summary["deadletters"] == 2
    versions = env.versions()
    assert versions and versions[-1]["samples_trained"] == distinct(samples)
    letters = deadletters(env.bootstrap, env.topic)
    assert [d["value"] for d in letters[:1]] == [b"not avro"] and len(letters) == 2
    assert letters[0]["source_partition"] == "0" and int(letters[0]["source_offset"]) == len(samples) + 40
    assert "single-object marker" in letters[0]["error"]
    assert "label must be 1 on POSITIVE" in letters[1]["error"]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(s) + "\n" for s in samples[-300:]))
    for record in versions:
        report = evaluate(env.model_dir / str(record["version"]), eval_file)
        assert report["count"] == 300 and report["logloss"] is not None


def test_a_cold_stream_of_positives_first_does_not_start_the_model_saturated(sidecar_env, tmp_path: Path) -> None:
    """A live stream's first batch holds POSITIVEs only (its NEGATIVEs come out a window later). A model
    whose starting bias took that batch's rate (logit ~9) would still predict ~1 thousands of steps
    later; the sidecar lays the features out from the first batch but starts the bias at logit 0."""
    env: SidecarEnv = sidecar_env()
    samples = stream(1500, seed=3, users=20, items=10)
    first = [s for s in samples if s["attribution"] == "POSITIVE"][:128]  # one whole batch (size 128)
    first_ids = {s["sample_id"] for s in first}
    rest = [s for s in samples if s["sample_id"] not in first_ids]
    produce(env.bootstrap, env.topic, [*first, *rest])
    result = env.run("--exit-when-idle", "3s")
    assert result.returncode == 0, result.stderr[-3000:]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(s) + "\n" for s in rest[-400:]))
    last = env.versions()[-1]
    report = evaluate(env.model_dir / str(last["version"]), eval_file)
    assert 0.5 < report["prediction_bias"] < 1.6, report


def committed_offsets(env: SidecarEnv, partitions: int = 1) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": env.bootstrap, "group.id": f"trainer.{env.task}"})
    try:
        tps = consumer.committed([TopicPartition(env.topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in tps}


@pytest.mark.slow
def test_sigkill_mid_stream_and_restart_train_each_distinct_sample_once(sidecar_env, processes, tmp_path: Path) -> None:
    env: SidecarEnv = sidecar_env(
        2, **{"sidecar.batch.size": 32, "sidecar.checkpoint.every_steps": 4, "sidecar.export_interval": "1s"}
    )
    samples = stream(5000, seed=4, users=20, items=10)  # long enough for versions between the kills
    produce(env.bootstrap, env.topic, [*samples, *samples[100:300]])  # a replay's repeats
    total = distinct(samples)
    kills = 0
    for fraction in (0.15, 0.4, 0.7):
        proc = env.start("--exit-when-idle", "3s")
        processes.append(proc)
        wait_for(
            lambda f=fraction, p=proc: p.poll() is not None
            or (position(env) or {}).get("samples_trained", 0) >= f * total,
            240,
            f"a checkpoint past {fraction:.0%} of the stream",
        )
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += 1
    assert kills >= 2
    result = env.run("--exit-when-idle", "3s")
    assert result.returncode == 0, result.stderr[-3000:]
    versions = env.versions()
    assert versions[-1]["samples_trained"] == total
    published = [v for v in versions if v["status"] == "published"]
    assert len(published) >= 2
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(s) + "\n" for s in samples[-200:]))
    for record in published:
        if (env.model_dir / str(record["version"])).is_dir():  # the last K are kept
            assert evaluate(env.model_dir / str(record["version"]), eval_file)["count"] == 200


def test_sigterm_leaves_a_checkpoint_and_committed_offsets(sidecar_env, processes) -> None:
    env: SidecarEnv = sidecar_env(**{"sidecar.batch.size": 32, "sidecar.checkpoint.every": "1m"})
    produce(env.bootstrap, env.topic, stream(3000, seed=8, users=20, items=10))
    proc = env.start()
    processes.append(proc)
    wait_for(lambda: proc.poll() is not None or env.versions(), 240, "a first version")
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    saved = position(env)
    assert saved is not None and saved["samples_trained"] > 0
    assert (env.model_dir / "checkpoints" / f"{saved['checkpoint']}.index").is_file()
    assert committed_offsets(env) == {int(p): o for p, o in saved["offsets"].items()}
    # The last seconds of training are not lost: a last version holds everything the checkpoint does.
    assert max(int(r["samples_trained"] or 0) for r in env.versions()) == saved["samples_trained"]


def later(samples: list[dict[str, Any]], by_ms: int) -> list[dict[str, Any]]:
    """The samples with every event time ``by_ms`` later (a stream that continues another)."""
    keys = ("impression_time_ms", "label_time_ms", "emit_time_ms")
    return [{**s, **{k: s[k] + by_ms for k in keys if s.get(k) is not None}} for s in samples]


@pytest.mark.slow
def test_versions_trained_on_corrupt_labels_are_refused_or_rolled_back(sidecar_env, processes) -> None:
    """A version that holds the first few corrupt samples (fewer than a block of statistics) can pass
    the gate; once the corruption shows in the data checks it is rolled back, to the last version
    trained before it, and every later one is refused."""
    env: SidecarEnv = sidecar_env(**{"sidecar.batch.size": 64, "sidecar.export_interval": "1s"})
    good = stream(3000, seed=5, users=20, items=10)
    bad = later(corrupt(stream(2000, seed=6, users=20, items=10), seed=7), good[-1]["emit_time_ms"])
    notices: list[dict[str, Any]] = []
    pubsub = env.registry().pubsub()
    pubsub.subscribe(f"{env.prefix}:notices")
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                notices.append(json.loads(message["data"]))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    proc = env.start()
    processes.append(proc)

    def version_at(count: int) -> dict[str, Any] | None:
        return next((v for v in env.versions() if v.get("samples_trained") == count), None)

    n_good, head = distinct(good), 60
    for part, count in ((good, n_good), (bad[:head], n_good + head), (bad[head:], n_good + distinct(bad))):
        produce(env.bootstrap, env.topic, part)
        wait_for(lambda c=count: proc.poll() is not None or version_at(c), 240, f"a version of {count} samples")
    first_bad = version_at(n_good + head)
    assert first_bad is not None
    if first_bad["status"] != "refused":  # published on the first corrupt samples: rolled back since
        wait_for(lambda: proc.poll() is not None or version_at(n_good + head)["status"] == "rolled_back", 120,
                 "the rollback of the version holding the first corrupt samples")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    listening.clear()
    listener.join(5)
    pubsub.close()
    versions = env.versions()
    before = [v for v in versions if v["samples_trained"] <= n_good]
    after = [v for v in versions if v["samples_trained"] > n_good]
    assert len([v for v in before if v["status"] != "refused"]) >= 2
    assert after and all(v["status"] in ("refused", "rolled_back") for v in after), [
        (v["version"], v["status"], v["reasons"]) for v in after
    ]
    current = next(v for v in versions if v["version"] == env.current())
    assert current["status"] == "published" and current["samples_trained"] <= n_good
    assert any(r.startswith("data: ") for v in after if v["status"] == "refused" for r in v["reasons"])
    for v in after:  # each decision is on record: the tests and the data checks
        # a version judged while the first corrupt one was still current compares from there (a loaded
        # machine can judge it before that rollback): its span starts at n_good + head at the latest
        assert "tests" in v and v["data_checks"]["span"]["since"] <= n_good + head
    if first_bad["status"] != "refused":
        rolled = [n for n in notices if n["event"] == "rolled_back"]
        assert rolled and rolled[-1]["current"] == current["version"], notices
        left = version_at(n_good + head)
        assert left is not None and left["rollback"]["kind"] == "data" and left["rollback"]["windows"] >= 2
        assert left["rollback"]["suspect_from"] < n_good + head


def test_warm_start_distillation_and_the_metrics_endpoint(sidecar_env, processes, exported: Path) -> None:
    import urllib.request

    from devstack.processes import free_port

    port = free_port()
    env: SidecarEnv = sidecar_env(**{"sidecar.metrics_port": port})
    samples = stream(600, seed=11, users=60, items=30)
    produce(env.bootstrap, env.topic, samples)
    proc = env.start("--warm-start", str(exported), "--distill-from", str(exported))
    processes.append(proc)

    def scrape() -> dict[str, float]:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        return {
            line.split("{")[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("trainer_") and f'task="{env.task}"' in line
        }

    metrics = wait_for(
        lambda: proc.poll() is not None or scrape().get("trainer_samples_trained_total", 0) >= len(samples),
        240,
        "every sample trained, on /metrics",
    )
    assert proc.poll() is None, metrics
    wait_for(env.versions, 60, "a version")
    metrics = wait_for(lambda: (m := scrape()) and "trainer_consumer_lag" in m and m, 30, "the lag gauge")
    assert metrics["trainer_exports_total"] >= 1 and metrics["trainer_steps_total"] >= 1
    assert metrics["trainer_deadletters_total"] == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    version = env.model_dir / str(env.versions()[0]["version"])
    meta = json.loads((version / "assets.extra" / "trainer.json").read_text())
    offline = json.loads((exported / "assets.extra" / "trainer.json").read_text())
    assert meta["spec"] == offline["spec"]  # the architecture (and vocabulary) came from the offline model
    assert meta["config"]["loss"]["distill_weight"] == 0.5


def test_a_newer_offline_model_in_the_watched_directory_reinitialises_and_keeps_the_position(
    sidecar_env, processes, exported: Path, tmp_path: Path
) -> None:
    import shutil

    watched = tmp_path / "offline"
    watched.mkdir()
    env: SidecarEnv = sidecar_env(**{"sidecar.watch_dir": str(watched)})
    samples = stream(600, seed=12, users=60, items=30)
    produce(env.bootstrap, env.topic, samples)
    proc = env.start()
    processes.append(proc)
    wait_for(lambda: proc.poll() is not None or env.versions(), 240, "a first version")
    before = position(env)
    assert before is not None and before["samples_trained"] > 0
    shutil.copytree(exported, watched / "7")  # a day-level model appears
    log = env.model_dir.parent / "sidecar.log"
    wait_for(lambda: "newer offline model" in log.read_text(), 60, "the re-initialisation")
    distinct = len({s["sample_id"] for s in samples})
    wait_for(  # the stream drained (a loaded machine may still be reading it when the model appears)
        lambda: (p := position(env)) is not None and p["samples_trained"] >= distinct, 120, "the whole stream trained"
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    after = position(env)
    assert after is not None and after["extra"]["warm_version"] == 7
    assert after["samples_trained"] == distinct  # the position was kept
