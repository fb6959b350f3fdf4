"""Gate benchmark: ``python -m trainer.bench.gate``. Do healthy versions reach serving, and do versions
trained on corrupted samples never stay there?

Streams come from ``jobs.generate`` joined by ``jobs.sample_join replay`` (the jobs venv's Python):
``--impressions`` over ``--hours`` of event time, click rate 0.3, half the clicks late, 3 % of the
samples replayed a little later (as at-least-once gives; the dedup drops them). Each stream is trained
in-process by the sidecar's own parts (``TrainerState``'s train step, the :class:`Publisher` with its
gate, evidence and rollback, a real registry in a private redis-server, real exports, checkpoints with
:class:`CheckpointStore`), faster than through Kafka:

* exports every ``--export-min``..``--export-max`` samples (drawn: a caught-up stream exports often,
  a backlog rarely), a final one when the stream is drained;
* restarts: at three points the process is dropped as by SIGKILL and rebuilt from the last checkpoint,
  replaying the samples after it;
* a backlog over two partitions: for a stretch, one partition is read ``--skew`` samples ahead of the
  other (event time out of order by hours).

Healthy streams (``--seeds``): the share of exported versions published, rollbacks (all false), and at
the end how far the served version is behind the newest export. Corrupted streams (``--corruptions``,
each from the middle of the stream on, seed ``--corruption-seed``): the versions trained on corrupted
samples, whether each was refused or rolled back, none current at the end, and the samples from the
corruption's start until the first of them was refused or rolled back.

``--kafka`` adds one healthy run through ``trainer run`` on a real broker with SIGKILL restarts.
Results go to ``--json`` and, as a table, to ``--out`` (trainer/GATE_BENCHMARK.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.cli import Parser
from common.output import write_atomic
from trainer.bench.data import ROOT, _run

LATE, POSITIVE, NEGATIVE = "LATE_POSITIVE", "POSITIVE", "NEGATIVE"
TARGET_PUBLISHED = 0.9
TARGET_BEHIND = 2


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- streams -------------------------------------------------------------------------------------------


def generate(jobs_python: Path, workdir: Path, seed: int, impressions: int, hours: float) -> list[dict[str, Any]]:
    """The joined samples of one generated stream, in emission order (cached in ``workdir``)."""
    directory = workdir / f"stream-{seed}-{impressions}-{hours:g}"
    samples = directory / "samples.jsonl"
    if not samples.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        events = directory / "events.jsonl"
        rate = impressions / (hours * 3600.0)
        _run([str(jobs_python), "-m", "jobs.generate", "--out", str(events), "--quiet", "--impressions",
              str(impressions), "--seed", str(seed), "--rate", f"{rate:.6f}", "--ctr", "0.3", "--late-fraction",
              "0.5", "--run-id", ""])
        _run([str(jobs_python), "-m", "jobs.sample_join", "replay", "--events", str(events), "--out",
              str(samples) + ".tmp", "--window", "10m", "--horizon", "24h", "--quiet"])
        os.replace(str(samples) + ".tmp", samples)
        events.unlink()
    with open(samples, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def with_replays(samples: list[dict[str, Any]], share: float, rng: random.Random) -> list[dict[str, Any]]:
    """At-least-once: ``share`` of the samples sent again 1-500 samples later."""
    out: list[dict[str, Any]] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    for i, s in enumerate(samples):
        out.append(s)
        if rng.random() < share:
            pending.append((i + rng.randint(1, 500), s))
        while pending and pending[0][0] <= i:
            out.append(pending.pop(0)[1])
        pending.sort(key=lambda x: x[0])
    return out + [s for _, s in pending]


def with_backlog(samples: list[dict[str, Any]], start: float, length: int) -> list[dict[str, Any]]:
    """Two partitions by impression_id; from ``start`` (a share of the stream) on, ``length`` samples are
    read with partition 0's first (partition 1 catches up after): event time out of order by hours."""
    a = int(len(samples) * start)
    window = samples[a : a + length]
    first = [s for s in window if zlib.crc32(s["impression_id"].encode()) % 2 == 0]
    second = [s for s in window if zlib.crc32(s["impression_id"].encode()) % 2 == 1]
    return samples[:a] + first + second + samples[a + length :]


def _relabel(s: dict[str, Any], clicked: bool) -> dict[str, Any]:
    attribution = POSITIVE if clicked else NEGATIVE
    label_time = s["emit_time_ms"] if clicked else None
    return {**s, "label": int(clicked), "attribution": attribution,
            "sample_id": f"{s['impression_id']}:{s['task']}:{attribution}", "label_time_ms": label_time,
            "delay_ms": None if label_time is None else label_time - s["impression_time_ms"]}


def shuffled_features(part: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    keys = ("user_id", "item_id", "position", "context", "sparse", "dense")
    features = [{k: s[k] for k in keys} for s in part]
    rng.shuffle(features)
    return [{**s, **f} for s, f in zip(part, features, strict=True)]


def flipped_labels(part: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """20 % of the POSITIVE / NEGATIVE samples with the other label."""
    return [_relabel(s, s["label"] == 0) if s["attribution"] != LATE and rng.random() < 0.2 else s for s in part]


def constant_feature(part: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    return [{**s, "sparse": {**s["sparse"], "device": "ios"}} for s in part]


def missing_feature(part: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    return [{**s, "context": {k: v for k, v in s["context"].items() if k != "page"}} for s in part]


def ctr_shift(part: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The whole stream's click rate up by half: 20 % of the NEGATIVEs become POSITIVEs."""
    return [_relabel(s, True) if s["attribution"] == NEGATIVE and rng.random() < 0.2 else s for s in part]


def dropped_late_positives(part: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    return [s for s in part if s["attribution"] != LATE]


CORRUPTIONS: dict[str, Callable[[list[dict[str, Any]], random.Random], list[dict[str, Any]]]] = {
    "shuffled_features": shuffled_features,
    "flipped_labels": flipped_labels,
    "constant_feature": constant_feature,
    "missing_feature": missing_feature,
    "ctr_shift": ctr_shift,
    "dropped_late_positives": dropped_late_positives,
}


def corrupted(samples: list[dict[str, Any]], name: str, at: float, seed: int) -> tuple[list[dict[str, Any]],
                                                                                    set[str]]:
    """The stream with ``name`` applied from ``at`` (a share, emission order) on, and the sample_ids of
    the corrupted part (a version trained on any of them is "trained on corrupted samples")."""
    k = int(len(samples) * at)
    part = CORRUPTIONS[name](samples[k:], random.Random(seed))
    return samples[:k] + part, {s["sample_id"] for s in part}


# -- the in-process run --------------------------------------------------------------------------------


class Harness:
    """The sidecar's loop without Kafka: batches in order, the train step, the Publisher, checkpoints."""

    def __init__(self, config: Any, redis_url: str, model_dir: Path, prefix: str):
        from trainer.sidecar.loop import sidecar_config

        self.config = sidecar_config(config)
        self.sc = self.config.sidecar.model_copy(update={"model_dir": model_dir})
        self.redis_url, self.prefix = redis_url, prefix
        self.start()

    def start(self) -> None:
        """As a process start: registry from Redis and disk, the Publisher, the last checkpoint."""
        from trainer.sidecar.checkpoint import CheckpointStore, Position
        from trainer.sidecar.dedup import Dedup
        from trainer.sidecar.metrics import SidecarMetrics
        from trainer.sidecar.publishing import Publisher
        from trainer.sidecar.registry import Registry
        from trainer.sidecar.versions import VersionStore

        sc = self.sc
        self.store = VersionStore(sc.model_dir, sc.keep_versions)
        self.registry = Registry(self.redis_url, self.prefix, self.store, retry_for_s=10.0)
        self.registry.restore_from_disk()
        self.publisher = Publisher(sc, self.registry, self.store, SidecarMetrics(sc.task))
        self.publisher.sync_current()
        self.checkpoints = CheckpointStore(sc.model_dir / "checkpoints", sc.checkpoint.keep)
        position = self.checkpoints.load()
        self.state: Any = None
        if position is None:
            self.position, self.dedup = Position(), Dedup(sc.dedup.horizon, sc.dedup.max_entries)
        else:
            self.state = self.checkpoints.restore(self.config, position)
            self.dedup = self.checkpoints.load_dedup(position, sc.dedup.horizon, sc.dedup.max_entries)
            self.checkpoints.load_scores(position, self.publisher.scores)
            self.position = position

    @property
    def offset(self) -> int:
        return self.position.offsets.get(0, 0)

    def train(self, records: list[dict[str, Any]], first_offset: int) -> list[dict[str, Any]]:
        """One batch (the records at ``first_offset`` on); the rollback notices it caused."""
        import numpy as np

        from trainer.features import FeatureSpec
        from trainer.fit import targets
        from trainer.layers.calibration import calibrated
        from trainer.samples import SampleTable, parse_sample
        from trainer.state import TrainerState

        samples = [s for s in map(parse_sample, records) if not self.dedup.seen(str(s.sample_id), s.emit_time_ms)]
        self.position.offsets[0] = first_offset + len(records)
        if not samples:
            return []
        table = SampleTable(samples)
        if self.state is None:
            self.state = TrainerState(self.config, FeatureSpec.from_table(table, self.config.features))
        rows = np.arange(len(table))
        current = self.publisher.score_current(table)
        _, logits = self.state.train_and_score(self.state.encode(self.state.prepare(table), rows),
                                               targets(table, rows, None))
        progressive = calibrated(1.0 / (1.0 + np.exp(-logits)), self.state.loss.calibration,
                                 self.config.loss.fnc_max_probability, np)
        self.publisher.record_scores(table, progressive, current, self.position.samples_trained)
        self.position.samples_trained += len(table)
        notice = self.publisher.check_live()
        return [] if notice is None else [{**notice, "samples_trained": self.position.samples_trained}]

    def checkpoint(self) -> None:
        if self.state is not None:
            self.checkpoints.save(self.state, self.position, self.dedup, self.publisher.scores)

    def export(self) -> dict[str, Any] | None:
        self.checkpoint()
        last = self.publisher.last_samples_trained()
        if self.state is None or (last is not None and last >= self.position.samples_trained):
            return None
        candidate = self.publisher.next_candidate(self.position.samples_trained, self.position.offsets)
        return self.publisher.export_and_gate(self.state, candidate)

    def close(self) -> None:
        self.registry.close()


def run_in_process(records: list[dict[str, Any]], config: Any, redis_url: str, workdir: Path, args: argparse.Namespace,
                   rng: random.Random) -> dict[str, Any]:
    """One stream through the harness with restarts; the registry's records and the rollbacks."""
    prefix = f"bench:{workdir.name}:{time.time_ns()}"
    harness = Harness(config, redis_url, workdir / "model", prefix)
    batch, checkpoint_every = config.sidecar.batch.size, 40
    kills = sorted(int(len(records) * f) for f in (0.3, 0.55, 0.8))
    next_export = rng.randint(args.export_min, args.export_max)
    notices: list[dict[str, Any]] = []
    steps = 0
    started = time.monotonic()
    while harness.offset < len(records):
        offset = harness.offset
        notices += harness.train(records[offset : offset + batch], offset)
        steps += 1
        if steps % checkpoint_every == 0:
            harness.checkpoint()
        if harness.position.samples_trained >= next_export:
            harness.export()
            next_export = harness.position.samples_trained + rng.randint(args.export_min, args.export_max)
        if kills and harness.offset >= kills[0]:
            kills.pop(0)
            harness.close()  # dropped as by SIGKILL: what the last checkpoint holds survives
            harness.start()
            next_export = harness.position.samples_trained + rng.randint(args.export_min, args.export_max)
    harness.export()
    versions, current = harness.registry.versions(), harness.registry.current()
    harness.close()
    return {"versions": versions, "current": current, "notices": notices,
            "seconds": round(time.monotonic() - started, 1)}


# -- judging a run -------------------------------------------------------------------------------------


def decisions(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version's decision in brief: status, the paired tests' differences and p-values, reasons."""
    out = []
    for v in versions:
        tests = v.get("tests") or {}
        brief = {k: {f: tests[k].get(f) for f in ("difference", "relative_increase", "ratio", "p_value", "auc",
                                                  "prediction_bias") if f in tests[k]}
                 for k in ("auc", "logloss", "bias_shift", "auc_floor", "bias_floor") if isinstance(tests.get(k), dict)}
        rollback = v.get("rollback") or {}
        out.append({"version": v["version"], "status": v["status"], "samples_trained": v.get("samples_trained"),
                    "evidence": (v.get("evidence") or {}).get("paired"), "tests": brief,
                    "reasons": v.get("reasons", [])[:3],
                    **({"rollback": {k: rollback.get(k) for k in ("kind", "reasons", "suspect_from")}}
                       if rollback else {})})
    return out


def healthy_figures(versions: list[dict[str, Any]], current: int | None) -> dict[str, Any]:
    from trainer.sidecar.gate import freshness

    judged = [v for v in versions if v.get("samples_trained") is not None]
    published = [v for v in judged if v["status"] in ("published", "rolled_back")]
    rolled = [v for v in judged if v["status"] == "rolled_back"]
    fresh = freshness(versions, current)
    return {
        "exported": len(judged),
        "published": len(published),
        "published_share": round(len(published) / len(judged), 3) if judged else None,
        "rollbacks": len(rolled),
        "refused": [{"version": v["version"], "reasons": v.get("reasons", [])[:2]} for v in judged
                    if v["status"] == "refused"],
        "served_behind_exports": fresh["exports_behind"],
        "served_behind_samples": fresh["samples_behind"],
        "served_behind_seconds": fresh["seconds_behind"],
        "meets_target": bool(judged) and len(published) / len(judged) >= TARGET_PUBLISHED and not rolled
        and fresh["exports_behind"] <= TARGET_BEHIND,
    }


def corrupted_figures(versions: list[dict[str, Any]], current: int | None, notices: list[dict[str, Any]],
                      start: int) -> dict[str, Any]:
    """``start``: distinct samples trained before the first corrupted one."""
    bad = [v for v in versions if v.get("samples_trained") is not None and v["samples_trained"] > start]
    caught = [v for v in bad if v["status"] in ("refused", "rolled_back")]
    moments = [int(v["samples_trained"]) for v in bad if v["status"] == "refused"]
    moments += [int(n["samples_trained"]) for n in notices if n.get("event") == "rolled_back"
                and any(v["version"] == n.get("previous") for v in bad)]
    return {
        "corruption_from_sample": start,
        "bad_versions": len(bad),
        "refused": sum(v["status"] == "refused" for v in bad),
        "rolled_back": sum(v["status"] == "rolled_back" for v in bad),
        "bad_current_at_end": any(v["version"] == current for v in bad),
        "samples_until_caught": min(moments) - start if moments else None,
        "first_reasons": next((v.get("reasons", [])[:2] for v in bad if v["status"] == "refused"), []),
        "meets_target": bool(bad) and len(caught) == len(bad) and not any(v["version"] == current for v in bad),
    }


def trained_before(records: list[dict[str, Any]], marked: set[str]) -> int:
    """Distinct samples trained before the first one in ``marked`` (the dedup's view of the stream, in
    the order it is read: replays and the backlog's partition order included)."""
    seen: set[str] = set()
    for s in records:
        if s["sample_id"] in marked:
            return len(seen)
        seen.add(s["sample_id"])
    raise ValueError("no marked sample in the stream")


# -- through `trainer run` on Kafka --------------------------------------------------------------------


def run_kafka(records: list[dict[str, Any]], bootstrap: str, redis_url: str, workdir: Path,
              settings: dict[str, Any]) -> dict[str, Any]:
    """``trainer run --export-interval 5s --exit-when-idle 5s``, SIGKILLed three times and restarted."""
    import yaml
    from confluent_kafka import Producer

    from common.topics import create_topics
    from schemas import Codec

    task = f"gate{time.time_ns() % 10**9}"
    create_topics(bootstrap, {f"samples.{task}": (2, 0), "deadletter": (1, 0)})
    codec, producer = Codec.default(), Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for r in records:
        producer.produce(f"samples.{task}", codec.encode("Sample", r), r["impression_id"].encode())
        producer.poll(0)
    producer.flush(120)
    model_dir = workdir / "kafka-model"
    sidecar = {**settings.get("sidecar", {}), "task": task, "model_dir": str(model_dir), "metrics_port": 0,
               "tensorboard": False, "kafka": {"bootstrap_servers": bootstrap, "group_id": task},
               "redis": {"url": redis_url, "key_prefix": f"bench:{task}"}}
    config = workdir / "kafka-trainer.yaml"
    config.write_text(yaml.safe_dump({**settings, "sidecar": sidecar}))
    argv = [sys.executable, "-m", "trainer", "run", "--config", str(config), "--export-interval", "5s",
            "--exit-when-idle", "5s"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    distinct = len({r["sample_id"] for r in records})
    started = time.monotonic()
    with open(workdir / "kafka-sidecar.log", "ab") as log:
        for fraction in (0.3, 0.55, 0.8):
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log, env=env)
            while proc.poll() is None and _trained(model_dir) < fraction * distinct:
                time.sleep(0.5)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
        done = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=log, env=env, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"trainer run exited {done.returncode}; see {workdir / 'kafka-sidecar.log'}")
    shown = subprocess.run([sys.executable, "-m", "trainer", "versions", "--config", str(config), "--json"],
                           cwd=ROOT, capture_output=True, text=True, env=env, check=True)
    listing = json.loads(shown.stdout)
    return {"versions": listing["versions"], "current": listing["current"], "freshness": listing.get("freshness"),
            "trained": _trained(model_dir), "distinct": distinct, "seconds": round(time.monotonic() - started, 1)}


def _trained(model_dir: Path) -> int:
    try:
        return int(json.loads((model_dir / "checkpoints" / "sidecar.json").read_text())["samples_trained"])
    except (OSError, ValueError, KeyError):
        return 0


# -- the report ----------------------------------------------------------------------------------------


NOTES = [
    "How to read it:",
    "",
    "- A version is *trained on corrupted samples* when its `samples_trained` exceeds the distinct samples read "
    "before the first corrupted one, in the order the stream is read (replays and the backlog's partition order "
    "included: the backlog reads some corrupted samples of one partition early).",
    "- *Samples until caught* runs from that point to the first refusal or rollback of such a version, so it "
    "includes the wait for the next export (exports come every 4,000-20,000 samples here, at the same points "
    "for every corruption: one stream, one seed); when the first version on it is refused, that wait is all "
    "of it. The data checks themselves flag the first block of 2,000 samples that holds enough of the "
    "corruption.",
    "- Healthy versions are published without tests while there is no matured evidence yet (the first "
    "`gate.warmup` samples and `gate.maturity` of stream time): nothing speaks against them; the data checks "
    "apply from the first version with a reference.",
    "- The in-process runs use the sidecar's own parts (train step, Publisher, registry in a private "
    "redis-server, exports, checkpoints), not Kafka; the last section runs `trainer run` itself.",
    "",
]


def markdown(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [
        "# Trainer: gate benchmark",
        "",
        "Do healthy versions reach serving, and do versions trained on corrupted samples never stay there? "
        "Produced by `.venv/trainer/bin/python -m trainer.bench.gate` "
        f"({a['impressions']} impressions over {a['hours']:g} h per stream, click rate 0.3, half the clicks late, "
        f"3 % of the samples replayed; exports every {a['export_min']}-{a['export_max']} samples; three restarts "
        "from the last checkpoint; a two-partition backlog). Gate and rollback settings: the shipped defaults.",
        "",
        "## Healthy streams",
        "",
        "| seed | exported | published | share | rollbacks | served behind newest: exports / samples / s | "
        "refused (reason) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for seed, h in result["healthy"].items():
        why = "; ".join(f"v{r['version']}: {' / '.join(r['reasons'])}" for r in h["refused"]) or "-"
        lines.append(f"| {seed} | {h['exported']} | {h['published']} | {h['published_share']} | {h['rollbacks']} | "
                     f"{h['served_behind_exports']} / {h['served_behind_samples']} / {h['served_behind_seconds']} | "
                     f"{why} |")
    lines += [
        "",
        f"Targets: at least {TARGET_PUBLISHED:.0%} of the exported versions published, no rollback, the served "
        f"version at most {TARGET_BEHIND} exports behind the newest at the end.",
        "",
        "## Corrupted streams (from the middle of the stream on)",
        "",
        "| corruption | versions trained on it | refused | rolled back | one current at the end | the first one "
        "(samples after the corruption's start) | samples until caught | first reason |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in result["corrupted"].items():
        start = c["corruption_from_sample"]
        first = next((d for d in c.get("decisions", []) if (d.get("samples_trained") or 0) > start), None)
        at = "-" if first is None else f"{first['status']} ({first['samples_trained'] - start})"
        lines.append(f"| {name} | {c['bad_versions']} | {c['refused']} | {c['rolled_back']} | "
                     f"{'yes' if c['bad_current_at_end'] else 'no'} | {at} | {c['samples_until_caught']} | "
                     f"{' / '.join(c['first_reasons']) or '-'} |")
    lines += ["", "Target: every version trained on corrupted samples refused or rolled back, none current at the end."]
    if result.get("kafka"):
        k = result["kafka"]
        lines += ["", "## Through `trainer run` on Kafka (two partitions, SIGKILLed three times)", "",
                  f"Seed {k['seed']}: {k['trained']} samples trained of {k['distinct']} distinct; "
                  f"{k['figures']['exported']} versions, {k['figures']['published']} published "
                  f"({k['figures']['published_share']}), {k['figures']['rollbacks']} rollbacks, served version "
                  f"{k['figures']['served_behind_exports']} exports behind the newest ({k['seconds']} s)."]
    lines += ["", f"Machine: {result['machine']}; {result['seconds']} s in all.", "", *NOTES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m trainer.bench.gate", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3], help="healthy streams (none: skip them)")
    parser.add_argument("--impressions", type=int, default=120_000)
    parser.add_argument("--hours", type=float, default=5.0)
    parser.add_argument("--corruptions", nargs="*", choices=sorted(CORRUPTIONS), default=sorted(CORRUPTIONS))
    parser.add_argument("--corruption-seed", type=int, default=11)
    parser.add_argument("--export-min", type=int, default=4_000)
    parser.add_argument("--export-max", type=int, default=20_000)
    parser.add_argument("--skew", type=int, default=20_000, help="samples of the backlog read partition by partition")
    parser.add_argument("--kafka", action="store_true", help="also one healthy run through trainer run on Kafka")
    parser.add_argument("--quick", action="store_true", help="one seed, two corruptions, 30k impressions")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "gate")
    parser.add_argument("--jobs-python", type=Path, default=ROOT / ".venv" / "jobs" / "bin" / "python")
    parser.add_argument("--json", metavar="OUT", help="write the results here")
    parser.add_argument("--out", type=Path, help="write the markdown report here (trainer/GATE_BENCHMARK.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.impressions, args.hours = args.seeds[:1], 30_000, 2.0
        args.corruptions = args.corruptions[:2]
        args.export_min, args.export_max, args.skew = 2_000, 8_000, 5_000
    if not 0 < args.export_min <= args.export_max:
        parser.error(f"need 0 < --export-min <= --export-max, got {args.export_min} and {args.export_max}")
    from trainer.quiet import import_tensorflow

    import_tensorflow()
    from trainer.bench.sidecar import _services
    from trainer.config import TrainerConfig
    from trainer.sidecar.metrics import configure_json_logging

    configure_json_logging(quiet=True)
    logging.getLogger("trainer").setLevel(logging.ERROR)
    settings: dict[str, Any] = {"sidecar": {"batch": {"size": 256}}}
    config = TrainerConfig.load(None, {"sidecar.batch.size": 256, "sidecar.metrics_port": 0,
                                       "sidecar.tensorboard": False})
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                              "healthy": {}, "corrupted": {}}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gate-")))
        bootstrap, redis_url = _services(stack, tmp) if args.kafka else ("", _redis(stack, tmp))

        def one(records: list[dict[str, Any]], name: str, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            rng = random.Random(seed)
            stream = with_backlog(with_replays(records, 0.03, rng), 0.4, args.skew)
            _say(f"{name}: {len(stream)} samples")
            return run_in_process(stream, config, redis_url, tmp / name, args, rng), stream

        for seed in args.seeds:
            records = generate(args.jobs_python, args.workdir, seed, args.impressions, args.hours)
            run, _ = one(records, f"healthy-{seed}", seed)
            figures = healthy_figures(run["versions"], run["current"])
            result["healthy"][str(seed)] = {**figures, "seconds": run["seconds"],
                                            "decisions": decisions(run["versions"])}
            _say(f"healthy seed {seed}: {json.dumps(figures)}")
        base = generate(args.jobs_python, args.workdir, args.corruption_seed, args.impressions, args.hours)
        for name in args.corruptions:
            records, marked = corrupted(base, name, 0.5, args.corruption_seed)
            run, stream = one(records, name, args.corruption_seed)
            figures = corrupted_figures(run["versions"], run["current"], run["notices"], trained_before(stream, marked))
            result["corrupted"][name] = {**figures, "seconds": run["seconds"], "decisions": decisions(run["versions"])}
            _say(f"{name}: {json.dumps(figures)}")
        if args.kafka:
            seed = args.seeds[0] if args.seeds else args.corruption_seed
            records = with_replays(generate(args.jobs_python, args.workdir, seed, args.impressions, args.hours), 0.03,
                                   random.Random(seed))
            run = run_kafka(records, bootstrap, redis_url, tmp, settings)
            result["kafka"] = {"seed": seed, "trained": run["trained"], "distinct": run["distinct"],
                               "seconds": run["seconds"], "figures": healthy_figures(run["versions"], run["current"]),
                               "decisions": decisions(run["versions"])}
            _say(f"kafka: {json.dumps({k: v for k, v in result['kafka'].items() if k != 'decisions'})}")
    result["machine"] = f"{os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f} at the end"
    result["seconds"] = round(time.monotonic() - started, 1)
    result["meets_targets"] = all(h["meets_target"] for h in result["healthy"].values()) and all(
        c["meets_target"] for c in result["corrupted"].values()
    )
    if args.json:
        write_atomic(args.json, json.dumps(result, indent=1, default=str) + "\n")
    if args.out:
        write_atomic(args.out, markdown(result))
    brief = {kind: {name: {k: v for k, v in run.items() if k != "decisions"} for name, run in result[kind].items()}
             for kind in ("healthy", "corrupted")}
    print(json.dumps({**brief, "meets_targets": result["meets_targets"]}))
    return 0


def _redis(stack: ExitStack, workdir: Path) -> str:
    """A private redis-server unless ``REDIS_URL`` names one."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from devstack.processes import free_port
    from devstack.stack import start_redis

    server = start_redis(free_port(), workdir / "redis.log")
    stack.callback(server.stop)
    return server.address


if __name__ == "__main__":
    sys.exit(main())
