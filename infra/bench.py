"""`make bench` (`python -m infra.bench`): every benchmark in one run, one table, `bench-results.json`.

Each benchmark runs in its own virtualenv (PyFlink and TensorFlow cannot share one) and writes JSON;
each figure is printed beside the baseline it is measured against in that same run, with the target
from docs/performance.md. The registry below is the list: a benchmark not named here is not run.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
PROG = "python -m infra.bench"
README_RESULTS = ROOT / "docs" / "bench-results.json"  # the run whose table the README shows
VENVS = {"jobs": ROOT / ".venv" / "jobs" / "bin" / "python", "trainer": ROOT / ".venv" / "trainer" / "bin" / "python"}


@dataclass(frozen=True)
class Row:
    """One figure beside its baseline, measured in the same run."""

    figure: str
    value: float | None
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ratio": self.ratio}


@dataclass(frozen=True)
class Benchmark:
    name: str
    venv: str
    argv: tuple[str, ...]  # "{out}" stands for the JSON file it writes; without it, JSON comes on stdout
    quick: tuple[str, ...]  # extra arguments of a quick run (smoke test of the whole chain)
    rows: Callable[[Any], list[Row]]


def _stdout_json(text: str) -> Any:
    """The JSON a benchmark printed: one object, or one object per line."""
    lines = [line for line in text.splitlines() if line.strip().startswith(("{", "["))]
    if len(lines) == 1:
        return json.loads(lines[0])
    return [json.loads(line) for line in lines]


def codec_rows(records: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for r in records:
        if r["record"] not in ("Sample", "Impression"):
            continue
        name = r["record"]
        rows += [
            Row(f"codec: {name} Avro encode", r["avro_encode_per_s"], "records/s", "orjson encode",
                r["json_encode_per_s"]),
            Row(f"codec: {name} Avro decode", r["avro_decode_per_s"], "records/s", "orjson decode",
                r["json_decode_per_s"]),
            Row(f"codec: {name} Avro size", r["avro_bytes"], "bytes", "JSON size", r["json_bytes"]),
        ]
    return rows


def replay_rows(data: dict[str, Any]) -> list[Row]:
    by_name = {r["name"]: r for r in data["results"] if not r.get("skipped")}
    peer = by_name.get("flink-sql", {}).get("events_per_second")
    targets = {"local": ">= 0.5 x peer", "flink": "reported (Python in Flink, per slot)"}
    return [
        Row(f"replay --engine {name}", by_name[name]["events_per_second"], "events/s",
            "Flink SQL interval join (peer)", peer, targets[name])
        for name in ("local", "flink")
        if name in by_name
    ]


def embedded_rows(data: dict[str, Any]) -> list[Row]:
    rows = [
        Row("embedded runtime (Kafka + Avro + Redis)", data["embedded"]["events_per_s"], "events/s",
            "decode -> encode -> produce passthrough", data["passthrough"]["events_per_s"], ">= 0.6"),
    ]
    if "passthrough_generic" in data:  # the baseline the target was first set against (reported)
        rows.append(Row("embedded runtime (Kafka + Avro + Redis)", data["embedded"]["events_per_s"], "events/s",
                        "the same passthrough, generic codec", data["passthrough_generic"]["events_per_s"],
                        "reported"))
    state_bytes = data["embedded"].get("state_bytes_per_pending_impression")
    if state_bytes is not None:  # None when the last checkpoint held no pending impression
        rows.append(Row("state per pending impression", state_bytes, "bytes"))
    fresh = data.get("freshness") or {}
    if fresh.get("p99_s") is not None:
        rows.append(Row("freshness: label -> sample, p99", fresh["p99_s"], "s", target="< 1 s"))
    return rows


def kafka_rows(data: dict[str, Any]) -> list[Row]:
    peer = data["peer"]["events_per_s"]
    rows = [
        Row(f"Flink job on Kafka, parallelism {p}, per slot", data[f"flink_p{p}"]["events_per_s_per_slot"], "events/s",
            "Flink SQL interval join on Kafka", peer, "reported")
        for p in (1, 2)
        if f"flink_p{p}" in data
    ]
    if data.get("embedded", {}).get("events_per_s") is not None:
        rows.append(Row("embedded runtime on Kafka", data["embedded"]["events_per_s"], "events/s",
                        "Flink SQL interval join on Kafka", peer, "reported"))
    return rows


def sidecar_rows(data: dict[str, Any]) -> list[Row]:
    return [Row("trainer from Kafka", data["kafka_samples_per_s"], "samples/s", "same model, in-memory tensors",
                data["memory_samples_per_s"], ">= 0.8")]


def _r_nll(seed: dict[str, Any], setting: str, loss: str) -> float | None:
    res = seed.get(setting) or {}
    naive, oracle, got = res.get("naive"), res.get("oracle"), res.get(loss)
    if not (naive and oracle and got) or naive["logloss"] == oracle["logloss"]:
        return None
    return float((naive["logloss"] - got["logloss"]) / (naive["logloss"] - oracle["logloss"]))


def delayed_feedback_rows(per_seed: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for setting, target in (("online", ">= 0.5 (aim 0.8)"), ("offline", ">= 0.9")):
        values = [v for seed in per_seed if (v := _r_nll(seed, setting, "pu")) is not None]
        if values:
            rows.append(Row(f"PU {setting}: R-NLL (share of naive->oracle gap)", statistics.fmean(values), "",
                            target=target))
    online = [seed["online"] for seed in per_seed if "online" in seed]
    if online and all("pu" in s and "naive" in s for s in online):
        rows += [
            Row("PU online: prediction bias", statistics.fmean(s["pu"]["prediction_bias"] for s in online), "",
                "naive", statistics.fmean(s["naive"]["prediction_bias"] for s in online), "0.9 .. 1.1"),
            Row("PU online: AUC", statistics.fmean(s["pu"]["auc"] for s in online), "", "naive",
                statistics.fmean(s["naive"]["auc"] for s in online), ">= naive - 0.002"),
        ]
    return rows


def gate_rows(data: dict[str, Any]) -> list[Row]:
    healthy, corrupted = list(data["healthy"].values()), list(data["corrupted"].values())
    rows = []
    if healthy:
        rows += [
            Row("gate: healthy streams, versions published", min(h["published_share"] for h in healthy), "(worst seed)",
                target=">= 0.9"),
            Row("gate: healthy streams, rollbacks", sum(h["rollbacks"] for h in healthy), "", target="0"),
            Row("gate: healthy streams, served version behind the newest", max(h["served_behind_exports"]
                                                                               for h in healthy), "exports",
                target="<= 2"),
        ]
    if corrupted:
        caught = [c for c in corrupted if c["meets_target"]]
        rows.append(Row("gate: corruptions caught (every version on them refused or rolled back)", len(caught), "",
                        "corruptions", len(corrupted), "all"))
        until = [c["samples_until_caught"] for c in corrupted if c["samples_until_caught"] is not None]
        if until:
            rows.append(Row("gate: samples from a corruption's start until caught (mean)", statistics.fmean(until),
                            "samples", target="reported"))
    if data.get("kafka"):
        k = data["kafka"]["figures"]
        rows.append(Row("gate: trainer run on Kafka, SIGKILLed 3x, versions published", k["published_share"], "",
                        target=">= 0.9"))
    return rows


def grid_rows(data: dict[str, Any]) -> list[Row]:
    """The delayed-feedback grid's summary (trainer/bench/grid.py): per setting, over cells and seeds."""
    rows = []
    for setting, summary in data["summary"].items():
        if setting == "sidecar":
            rows.append(Row("grid: sidecar - fit, held-out log loss (largest)", summary["max_abs_dlogloss"], "",
                            target="< 0.005"))
            continue
        rows.append(Row(f"grid, pu {setting}: R-NLL (mean)", summary["r_nll_mean"], "", target=summary["r_nll_target"]))
        if summary.get("bias_min") is not None:
            for end in ("min", "max"):
                rows.append(Row(f"grid, pu {setting}: prediction bias ({end})", summary[f"bias_{end}"], "",
                                target=summary["bias_target"]))
        rows.append(Row(f"grid, pu {setting}: cells x seeds meeting the targets", summary["met"], "",
                        "cells x seeds run", summary["of"]))
    return rows


def models_rows(data: dict[str, Any]) -> list[Row]:
    """The seed models (trainer/bench/models.py): dual DNN student against its teacher, the two tower."""
    d, t = data["dual_dnn"], data["two_tower"]
    lat, p = d["latency_ms"], d["parameters"]
    return [
        Row("dual DNN: student AUC", d["student"]["auc"], "", "teacher", d["teacher"]["auc"], ">= teacher - 0.01"),
        Row("dual DNN: student weights", p["student_total"], "", "teacher", p["teacher_total"], "< teacher"),
        *(Row(f"dual DNN: student, batch of {n}", lat[f"batch_{n}"]["student"], "ms", "teacher",
              lat[f"batch_{n}"]["teacher"], "< teacher") for n in (1, 512)),
        Row("two tower: AUC", t["plain"]["auc"], "", "Wide & Deep", t["wide_deep_auc"], "reported"),
        Row("two tower: embedding rows pruned", t["rows_pruned"], "rows", "rows", t["rows"], "reported"),
        Row("two tower: pruned export, largest score change", t["pruned_vs_full_max_abs_diff"], "", target="0"),
        Row(f"two tower: 1 user x {t['n_items']} items (score_items)", t["latency_ms"]["score_items"], "ms",
            f"{t['n_items']} single calls", t["latency_ms"]["single_calls"], "< single calls"),
    ]


HASHING_COMBINES = ("sum", "concat")


def _rows_per_id(budget: float) -> str:
    return f"{budget:g} row{'' if budget == 1 else 's'} per ID"


def hashing_rows(data: dict[str, Any]) -> list[Row]:
    """Single hashing against multi-hash at equal memory (trainer/bench/hashing.py): collisions counted
    over the large population, AUC of the one-pass click model on the streamed one."""
    scale, stream, k = data["at_scale"], data["stream"], data["setup"]["tables"]
    rows = [
        Row(f"hashing: IDs collided, multi-hash {k} tables, {_rows_per_id(b['budget'])}",
            100 * b["multi_hash"]["rate"], f"% of {scale['ids']:,} IDs", "single hashing, the same rows",
            100 * b["single"]["rate"], "< single hashing")
        for b in scale["budgets"]
    ]
    for b in stream["budgets"]:
        schemes = b["schemes"]
        rows += [
            Row(f"hashing: AUC, multi-hash {combine}, {_rows_per_id(b['budget'])} ({stream['ids']:,} IDs streamed)",
                schemes[f"multi_hash_{combine}"]["auc"], "", "single hashing, the same rows",
                schemes["single"]["auc"], "reported")
            for combine in HASHING_COMBINES
        ]
    return rows


def delta_rows(data: dict[str, Any]) -> list[Row]:
    """Bytes per delta export against the full export of the same step (trainer/bench/delta.py), per export
    interval; an interval without a delta after the warm-up gives a row without a value."""
    rows = []
    full = f"full export, same step ({data['model']['vocab_capacity']:,} slots per field)"
    for r in data["results"]:
        every = f"{r['interval_s'] // 60} min" if r["interval_s"] % 60 == 0 else f"{r['interval_s']} s"
        median = r["delta_bytes"]["median"] if r["deltas"] else None
        rows.append(Row(f"delta exports every {every}: bytes per delta (median)", median, "bytes", full,
                        r.get("full_bytes"), "reported"))
    return rows


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("codec", "jobs", ("-m", "schemas.bench.codec", "--json"), ("--n", "2000", "--repeat", "1"), codec_rows),
    Benchmark("replay", "jobs", ("-m", "jobs.bench.replay", "--json"), ("--events-count", "20000"),
              replay_rows),
    Benchmark("embedded", "jobs", ("-m", "jobs.bench.embedded", "--skip-peer", "--json", "{out}"),
              ("--impressions", "5000", "--repeat", "1", "--skip-freshness"), embedded_rows),
    Benchmark("kafka", "jobs", ("-m", "jobs.bench.kafka", "--json", "{out}"), ("--impressions", "3000"), kafka_rows),
    Benchmark("trainer-kafka", "trainer", ("-m", "trainer.bench.sidecar", "--json", "{out}"),
              ("--samples", "3000", "--rounds", "1"), sidecar_rows),
    # A reduced grid (7 cells, one seed, the sidecar on two: ~30 min on 2 cores); the full one (30 cells x 3
    # seeds, hours): .venv/trainer/bin/python -m trainer.bench.grid --full.
    Benchmark("delayed-feedback-grid", "trainer", ("-m", "trainer.bench.grid", "--workdir", "{dir}", "--json", "{out}"),
              ("--quick",), grid_rows),
    Benchmark("delayed-feedback", "trainer",
              ("-m", "trainer.bench.delayed_feedback", "--workdir", "{dir}", "--out", "{dir}/BENCHMARK.md"),
              ("--quick", "--no-stability"), delayed_feedback_rows),
    Benchmark("models", "trainer", ("-m", "trainer.bench.models", "--workdir", "{dir}", "--json", "{out}"),
              ("--quick",), models_rows),
    Benchmark("gate", "trainer",
              ("-m", "trainer.bench.gate", "--kafka", "--json", "{out}", "--workdir", "{dir}", "--out",
               "{dir}/GATE_BENCHMARK.md"), ("--quick",), gate_rows),
    Benchmark("hashing", "trainer", ("-m", "trainer.bench.hashing", "--json", "{out}", "--out",
                                     "{dir}/HASHING_BENCHMARK.md"), ("--ids", "20000", "--stream-ids", "2000"),
              hashing_rows),
    # The versions go to a temporary directory the benchmark removes (a full export is ~30 MB).
    Benchmark("delta-exports", "trainer", ("-m", "trainer.bench.delta", "--json", "{out}"),
              ("--rate", "100", "--minutes", "1", "--intervals", "10s", "20s", "--warmup", "10s", "--users", "2000",
               "--items", "500"), delta_rows),
)


def run_one(bench: Benchmark, quick: bool, log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    out = BENCH_DIR / f"{bench.name}.json"
    workdir = BENCH_DIR / bench.name
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [a.replace("{out}", str(out)).replace("{dir}", str(workdir)) for a in bench.argv]
    if quick:
        argv += bench.quick
    python = VENVS[bench.venv]
    log(f"bench: {bench.name}: {python.parent.parent.name} python {' '.join(argv)}")
    started = time.monotonic()
    done = subprocess.run([str(python), *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [], {"name": bench.name, "error": f"exit {done.returncode}: {tail}", "seconds": seconds}
    if "{out}" in " ".join(bench.argv):
        data = json.loads(out.read_text())
    elif bench.name == "delayed-feedback":
        data = json.loads((workdir / "results.json").read_text())
    else:
        data = _stdout_json(done.stdout)
    rows = bench.rows(data)
    return rows, {"name": bench.name, "seconds": seconds, "raw": data}


def table(results: list[tuple[str, list[Row]]]) -> str:
    def num(x: float | None) -> str:
        if x is None:
            return "-"
        if 0 < abs(x) < 0.001:  # two significant digits, not 0.000 (multi-hash collision rates)
            return f"{x:.2g}"
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3f}"

    def ratio(r: Row) -> str:
        if r.ratio is None:
            return "-"
        return f"{r.ratio:.2g}" if 0 < abs(r.ratio) < 0.01 else f"{r.ratio:.2f}"

    head = ["benchmark", "figure", "value", "baseline (same run)", "baseline value", "ratio", "target"]
    body = [
        [name, r.figure, f"{num(r.value)} {r.unit}".strip(), r.baseline, num(r.baseline_value),
         ratio(r), r.target]
        for name, rows in results
        for r in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def readme_table(data: dict[str, Any]) -> str:
    """The README's table (`--readme-table`): a results file's rows as `make bench` printed them, under a
    line saying when and where they were measured, so that the README holds no figure the file lacks."""
    if data.get("quick"):
        raise ValueError("it holds a --quick run, which is not for quoting")
    names = [f.name for f in fields(Row)]
    results = [(b["name"], [Row(**{k: r[k] for k in names if k in r}) for r in b.get("rows", [])])
               for b in data["benchmarks"]]
    when = f" of {data['date']}" if data.get("date") else ""
    caption = [f"`make bench`{when} on {data['machine']}."]
    failed = [f"{b['name']} ({b['error']})" for b in data["benchmarks"] if "error" in b]
    if failed:
        caption.append(f"Failed in this run: {'; '.join(failed)}.")
    ran = {b["name"] for b in data["benchmarks"]}
    if missing := [b.name for b in BENCHMARKS if b.name not in ran]:
        caption.append(f"Not in this run: {', '.join(missing)}.")
    if data.get("note"):
        caption.append(str(data["note"]))
    return " ".join(caption) + "\n\n" + table(results)


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load {load:.1f} at start"


def main(argv: list[str] | None = None) -> int:
    names = [b.name for b in BENCHMARKS]
    from common.cli import EXIT_FAILED, EXIT_USAGE, Parser, fail

    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                        help=f"run only these, of {', '.join(names)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the chain, not for quoting")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results.json", metavar="FILE.json",
                        help="the results (default: bench-results.json)")
    parser.add_argument("--readme-table", action="store_true",
                        help="run nothing: print the README's table (markdown) from the --results file")
    parser.add_argument("--results", type=Path, default=README_RESULTS, metavar="FILE.json",
                        help="the results file --readme-table reads (default: docs/bench-results.json, the one "
                             "the README cites)")
    args = parser.parse_args(argv)
    if args.readme_table:
        try:
            print(readme_table(json.loads(args.results.read_text())))
        except (OSError, ValueError, LookupError, TypeError) as exc:
            return fail(PROG, f"--results: cannot use {args.results}: {exc}", EXIT_USAGE)
        return 0
    for venv, python in VENVS.items():
        if not python.exists():
            return fail(PROG, f"{python} is missing; run 'make setup' first ({venv} venv)", EXIT_FAILED)
    BENCH_DIR.mkdir(exist_ok=True)
    on_machine = machine()
    results: list[tuple[str, list[Row]]] = []
    records = []
    for bench in BENCHMARKS:
        if args.only and bench.name not in args.only:
            continue
        rows, record = run_one(bench, args.quick, lambda line: print(line, file=sys.stderr, flush=True))
        if "error" in record:
            print(f"bench: {bench.name} failed: {record['error']}", file=sys.stderr)
        results.append((bench.name, rows))
        records.append({**record, "rows": [r.to_json() for r in rows]})
    text = table(results)
    print(f"\nmachine: {on_machine}{' (quick run)' if args.quick else ''}\n\n{text}")
    from common.output import AtomicFile

    with AtomicFile(args.out) as out:
        out.file.write(json.dumps({"machine": on_machine, "date": time.strftime("%Y-%m-%d", time.gmtime()),
                                  "quick": args.quick, "benchmarks": records}, indent=1,
                                  default=str).encode())
        out.commit()
    failed = [r["name"] for r in records if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
