"""The synthetic event generator: determinism, ground truth, disorder bound, CTR and delays."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from jobs.generate import GenerateError, GeneratorConfig, main, run

ROOT = Path(__file__).resolve().parents[2]


def _generate(tmp_path: Path, name: str = "a", **kw) -> tuple[list[dict], list[dict], Path, Path]:
    out, truth = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.truth.jsonl"
    run(GeneratorConfig(**kw), out=str(out), truth=str(truth))
    events = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    return events, rows, out, truth


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    _, _, out_a, truth_a = _generate(tmp_path, "a", impressions=3000, seed=7)
    _, _, out_b, truth_b = _generate(tmp_path, "b", impressions=3000, seed=7)
    _, _, out_c, _ = _generate(tmp_path, "c", impressions=3000, seed=8)
    assert out_a.read_bytes() == out_b.read_bytes()
    assert truth_a.read_bytes() == truth_b.read_bytes()
    assert out_a.read_bytes() != out_c.read_bytes()


def test_events_follow_the_json_forms(tmp_path: Path) -> None:
    events, _, _, _ = _generate(tmp_path, impressions=2000, seed=1)
    kinds = Counter(e["type"] for e in events)
    assert set(kinds) == {"impression", "feature_snapshot", "label"}
    fields = {
        "impression": {
            "type",
            "request_id",
            "impression_id",
            "user_id",
            "item_id",
            "event_time_ms",
            "position",
            "context",
        },
        "feature_snapshot": {"type", "request_id", "event_time_ms", "sparse", "dense"},
        "label": {"type", "request_id", "impression_id", "label_type", "event_time_ms", "value"},
    }
    for e in events:
        assert set(e) == fields[e["type"]], e
        assert isinstance(e["event_time_ms"], int)
    label_types = Counter(e["label_type"] for e in events if e["type"] == "label")
    assert {"click", "conversion", "like"} <= set(label_types)


def test_truth_agrees_with_the_events(tmp_path: Path) -> None:
    events, rows, _, _ = _generate(tmp_path, impressions=5000, seed=3, duplicate_rate=0.05, orphan_rate=0.01)
    impressions = {e["impression_id"]: e for e in events if e["type"] == "impression"}
    assert len(rows) == 5000 == len(impressions)
    assert len({r["impression_id"] for r in rows}) == len(rows)
    clicks: dict[str, list[dict]] = {}
    for e in events:
        if e["type"] == "label" and e["label_type"] == "click":
            clicks.setdefault(e["impression_id"], []).append(e)
    for r in rows:
        imp = impressions[r["impression_id"]]
        assert (imp["request_id"], imp["user_id"], imp["item_id"], imp["event_time_ms"]) == (
            r["request_id"],
            r["user_id"],
            r["item_id"],
            r["impression_time_ms"],
        )
        assert 0.0 < r["p_click"] < 1.0
        if r["clicked"]:
            labels = clicks.pop(r["impression_id"])
            assert {e["event_time_ms"] - imp["event_time_ms"] for e in labels} == {r["delay_ms"]}
        else:
            assert r["delay_ms"] is None
            assert r["impression_id"] not in clicks
    # what is left are orphans: their request has no impression at all
    requests = {e["request_id"] for e in impressions.values()}
    assert clicks and all(e["request_id"] not in requests for es in clicks.values() for e in es)
    # duplicates: some impressions and some clicks appear twice, with identical content
    dup_imps = Counter(json.dumps(e, sort_keys=True) for e in events if e["type"] == "impression")
    assert any(n == 2 for n in dup_imps.values())


@pytest.mark.parametrize("disorder_ms", [0, 500, 3000])
def test_disorder_stays_within_its_bound(tmp_path: Path, disorder_ms: int) -> None:
    events, _, _, _ = _generate(tmp_path, impressions=4000, seed=5, disorder_ms=disorder_ms, rate=200.0)
    max_seen = -1
    worst = 0
    for e in events:
        t = e["event_time_ms"]
        worst = max(worst, max_seen - t)
        max_seen = max(max_seen, t)
    assert worst <= disorder_ms
    if disorder_ms:
        assert worst > disorder_ms // 4  # the bound is actually used


@pytest.mark.parametrize("ctr", [0.02, 0.1])
def test_ctr_is_close_to_the_configured_one(tmp_path: Path, ctr: float) -> None:
    _, rows, _, _ = _generate(tmp_path, impressions=30_000, seed=11, ctr=ctr)
    observed = sum(r["clicked"] for r in rows) / len(rows)
    mean_p = sum(r["p_click"] for r in rows) / len(rows)
    assert abs(mean_p - ctr) < 0.2 * ctr
    assert abs(observed - ctr) < 0.2 * ctr
    # the model carries signal: probabilities spread well beyond the mean
    ps = sorted(r["p_click"] for r in rows)
    assert ps[int(0.9 * len(ps))] > 2 * ps[int(0.1 * len(ps))]


def test_delays_are_placed_relative_to_window_and_horizon(tmp_path: Path) -> None:
    window, horizon = 60_000, 600_000
    _, rows, _, _ = _generate(
        tmp_path,
        impressions=20_000,
        seed=2,
        ctr=0.2,
        window_ms=window,
        horizon_ms=horizon,
        delay_mean_ms=10_000,
        late_fraction=0.25,
        beyond_horizon_fraction=0.1,
    )
    delays = [r["delay_ms"] for r in rows if r["clicked"]]
    assert all(d > 0 for d in delays)
    late = sum(window < d <= horizon for d in delays) / len(delays)
    beyond = sum(d > horizon for d in delays) / len(delays)
    assert abs(late - 0.25) < 0.04 and abs(beyond - 0.1) < 0.03


def test_snapshots_lag_a_little_and_some_are_missing(tmp_path: Path) -> None:
    events, _, _, _ = _generate(tmp_path, impressions=5000, seed=4, snapshot_missing=0.1, snapshot_max_delay_ms=1500)
    first_imp: dict[str, int] = {}
    for e in events:
        if e["type"] == "impression":
            first_imp.setdefault(e["request_id"], e["event_time_ms"])
    snaps = {e["request_id"]: e["event_time_ms"] for e in events if e["type"] == "feature_snapshot"}
    missing = 1 - len(snaps) / len(first_imp)
    assert 0.05 < missing < 0.15
    assert all(0 <= snaps[r] - first_imp[r] <= 1500 for r in snaps)


def test_bad_arguments_exit_2_with_one_line_and_leave_no_file(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.generate", "--out", str(out), "--ctr", "1.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--ctr" in proc.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_no_output_is_an_error() -> None:
    with pytest.raises(GenerateError):
        run(GeneratorConfig(impressions=10))


def test_cli_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e.jsonl"
    assert main(["--out", str(out), "--impressions", "500", "--json", "--quiet", "--window", "1m"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["impressions"] == 500
    assert summary["events"] == len(out.read_text().splitlines())


def _cli_run(tmp_path: Path, name: str, *flags: str) -> tuple[list[dict], dict]:
    out = tmp_path / f"{name}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.generate", "--out", str(out), "--impressions", "400", "--seed", "5",
         "--json", "--quiet", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()], json.loads(proc.stdout)


def test_two_runs_without_a_run_id_are_distinct_streams_with_shared_users_and_items(tmp_path: Path) -> None:
    """Two runs into the same topics must not share a request or impression id (the join would give one
    run's impression the other's labels); users and items are the model's features and stay shared."""
    a, summary_a = _cli_run(tmp_path, "a")
    b, summary_b = _cli_run(tmp_path, "b")
    assert summary_a["run_id"] != summary_b["run_id"]
    for events, summary in ((a, summary_a), (b, summary_b)):
        assert all(e["request_id"].startswith(summary["run_id"] + ".") for e in events)
    ids = {kind: [{e[kind] for e in events if kind in e} for events in (a, b)] for kind in ("request_id",
                                                                                          "impression_id")}
    assert not ids["request_id"][0] & ids["request_id"][1]
    assert not ids["impression_id"][0] & ids["impression_id"][1]
    users = [{e["user_id"] for e in events if e["type"] == "impression"} for events in (a, b)]
    assert users[0] == users[1]  # same seed: the same users and items, only the ids of the run differ


def test_the_same_run_id_and_seed_give_the_same_bytes(tmp_path: Path) -> None:
    _cli_run(tmp_path, "a", "--run-id", "nightly-7")
    _cli_run(tmp_path, "b", "--run-id", "nightly-7")
    _, summary = _cli_run(tmp_path, "c", "--run-id", "")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])["request_id"].startswith("nightly-7.r")
    assert summary["run_id"] == ""  # no prefix: the ids of a run before run ids existed
    unprefixed = [json.loads(line)["request_id"] for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert all(r[0] in "rx" for r in unprefixed)


def test_a_bad_run_id_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.generate", "--out", str(tmp_path / "e.jsonl"), "--run-id", "a:b"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "python -m jobs.generate: error: --run-id must be at most 32 letters, digits, '_' or '-', got 'a:b'\n"
    )


@pytest.mark.integration
def test_kafka_mode_writes_avro_keyed_by_request_id_co_partitioned(
    kafka_bootstrap: str, unique_topic, tmp_path: Path
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from jobs.generate import KafkaTarget
    from schemas.codec import Codec

    topics = {k: unique_topic(f"gen.{k}", partitions=3) for k in ("impression", "feature_snapshot", "label")}
    out = tmp_path / "events.jsonl"
    target = KafkaTarget(kafka_bootstrap, topics["impression"], topics["feature_snapshot"], topics["label"])
    run(GeneratorConfig(impressions=600, seed=4), out=str(out), kafka=target)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    codec = Codec.default()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "gen-test", "enable.partition.eof": True})
    partition_of: dict[str, set[int]] = {}
    for kind, topic in topics.items():
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        got: list[dict] = []
        done: set[int] = set()
        while len(done) < 3:
            for msg in consumer.consume(500, 1.0):
                if msg.error():
                    done.add(msg.partition() or 0)
                    continue
                record = codec.decode(msg.value() or b"")[1]
                assert msg.key() == record["request_id"].encode()
                partition_of.setdefault(record["request_id"], set()).add(msg.partition() or 0)
                got.append({"type": kind, **record})
        want = [e for e in events if e["type"] == kind]
        assert sorted(json.dumps(g, sort_keys=True) for g in got) == sorted(json.dumps(w, sort_keys=True) for w in want)
    consumer.close()
    # co-partitioned: every request's events are in the same partition number on all three topics
    assert all(len(ps) == 1 for ps in partition_of.values())
    assert len({p for ps in partition_of.values() for p in ps}) == 3


@pytest.mark.integration
def test_speedup_paces_the_writes(kafka_bootstrap: str, unique_topic, tmp_path: Path) -> None:
    import time

    from jobs.generate import Generator, KafkaTarget

    cfg = GeneratorConfig(
        impressions=300,
        rate=100.0,
        window_ms=2_000,
        horizon_ms=2_000,
        delay_mean_ms=300,
        late_fraction=0.0,
        beyond_horizon_fraction=0.0,
        like_rate=0.0,
        conversion_rate=0.0,
        orphan_rate=0.0,
    )
    arrivals = [a for a, _ in Generator(cfg).events()]
    span_s = (arrivals[-1] - arrivals[0]) / 1000
    target = KafkaTarget(kafka_bootstrap, unique_topic("pace.i"), unique_topic("pace.s"), unique_topic("pace.l"))
    started = time.monotonic()
    run(cfg, kafka=target, speedup=2.0)
    elapsed = time.monotonic() - started
    assert span_s / 2 * 0.9 <= elapsed <= span_s / 2 + 10


def _join_config(path: Path, bootstrap: str, topics: dict[str, str], security: str = "") -> Path:
    path.write_text(
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        "  topics: {" + ", ".join(f"{k}: {v}" for k, v in topics.items()) + "}\n" + security
    )
    return path


def test_config_gives_the_kafka_target_its_security_with_the_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets never only on the command line: --config reads them from the file's environment."""
    from jobs.generate import build_parser, kafka_target

    monkeypatch.setenv("GEN_TEST_SASL_PASSWORD", "s3cret")
    security = (
        "  security: {protocol: SASL_SSL, sasl_mechanism: PLAIN, sasl_username: gen,\n"
        "             sasl_password: '${GEN_TEST_SASL_PASSWORD}'}\n"
    )
    config = _join_config(tmp_path / "join.yaml", "broker:9093", {"impressions": "imp.x"}, security)
    target = kafka_target(build_parser().parse_args(["--config", str(config), "--labels-topic", "lab.y"]))
    assert target.bootstrap_servers == "broker:9093"
    topics = (target.impressions, target.feature_snapshots, target.labels)
    assert topics == ("imp.x", "events.feature_snapshots", "lab.y")
    assert target.extra["sasl.password"] == "s3cret" and target.extra["security.protocol"] == "SASL_SSL"
    flags = build_parser().parse_args(["--config", str(config), "--bootstrap-servers", "other:9092"])
    assert kafka_target(flags).bootstrap_servers == "other:9092"  # a flag overrides the file


@pytest.mark.integration
def test_config_alone_writes_to_the_configs_cluster_and_topics(
    kafka_bootstrap: str, unique_topic, tmp_path: Path
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topics = {k: unique_topic(f"gencfg.{k}") for k in ("impressions", "feature_snapshots", "labels")}
    config = _join_config(tmp_path / "join.yaml", kafka_bootstrap, topics)
    out = tmp_path / "events.jsonl"
    assert main(["--config", str(config), "--impressions", "40", "--run-id", "cfg", "--out", str(out), "--quiet"]) == 0
    impressions = sum(1 for line in out.read_text().splitlines() if json.loads(line)["type"] == "impression")
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "gencfg", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topics["impressions"], 0, 0)])
    got = 0
    while True:
        msg = consumer.poll(10.0)
        assert msg is not None, "no end of partition within 10 s"
        if msg.error():
            break
        got += 1
    consumer.close()
    assert got == impressions > 0
