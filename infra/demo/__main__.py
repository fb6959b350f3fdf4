"""`python -m infra.demo [--duration 3m]`: see the package docstring. Everything lands in `.demo/`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from common.cli import EXIT_FAILED, Parser, deprecated_alias, duration, fail, non_negative_int, positive_int
from common.errors import CommonError
from common.output import write_atomic
from devstack.processes import free_port
from devstack.stack import LocalStack
from infra.demo import report
from infra.demo.day import DayModel, describe
from infra.demo.live import LiveView
from infra.demo.plan import START_MS, DemoPlan
from infra.demo.processes import Children, listen_port
from infra.demo.scrape import scrape
from infra.errors import InfraError

ROOT = Path(__file__).resolve().parents[2]
JOBS_PY = str(ROOT / ".venv" / "jobs" / "bin" / "python")
TRAINER_PY = str(ROOT / ".venv" / "trainer" / "bin" / "python")
TASK = "click"
DEMO_TRAINER_CONFIG = Path(__file__).resolve().parent / "trainer.yaml"
PROG = "python -m infra.demo"


class DemoError(InfraError):
    """The demo could not finish; the message says which part failed and where its log is."""


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Demo:
    def __init__(self, plan: DemoPlan, out: Path, console: Console):
        self.plan, self.out, self.console = plan, out, console
        self.children = Children(out / "logs", env={"PYTHONUNBUFFERED": "1"})
        self.stack = LocalStack(out / "stack", free_port(), free_port(), environ={})
        self.join_port = listen_port()
        self.trainer_port = listen_port(self.join_port + 1)
        self.naive_port = listen_port(self.trainer_port + 1)
        self.view = LiveView(self.join_port, self.trainer_port)
        self.day: dict[str, Any] | None = None  # the day-level model both sidecars start from
        self.bootstrap = ""
        self.redis = ""
        self.seen_until_ms = 0

    # -- processes ------------------------------------------------------------------------------------------------

    def _redis_db(self, db: int) -> str:
        return self.redis.rsplit("/", 1)[0] + f"/{db}"

    def _start_trainer(self, name: str, loss: str, db: int, metrics_port: int) -> None:
        warm = [] if self.day is None else ["--warm-start", self.day["export"]]
        self.children.start(name, [
            TRAINER_PY, "-m", "trainer", "run", "--config", str(DEMO_TRAINER_CONFIG),
            "--bootstrap-servers", self.bootstrap, "--redis-url", self._redis_db(db), "--group-id", f"demo-{name}",
            "--task", TASK, "--loss", loss,
            "--model-dir", str(self.out / "models" / loss),
            "--metrics-port", str(metrics_port), *warm,
        ])

    def _start_stream(self) -> None:
        p = self.plan
        # Both sidecars first (TensorFlow takes a while to import), then the generator, then the join:
        # the join's bounded mode ends once its input has been idle, so it starts when events flow.
        self._start_trainer("trainer", "pu", 0, self.trainer_port)
        self._start_trainer("trainer-naive", "naive", 1, self.naive_port)
        self.console.print("starting the trainer sidecars (PU loss, and naive for comparison) ...")
        self._wait_for_endpoints([("trainer", self.trainer_port), ("trainer-naive", self.naive_port)])
        self.children.start("generator", [
            JOBS_PY, "-m", "jobs.generate", "--bootstrap-servers", self.bootstrap, *p.live_generator_flags(),
            "--speedup", f"{p.speedup:.3f}", "--truth", str(self.out / "truth.jsonl"), "--quiet",
        ])
        self.children.start("join", [
            JOBS_PY, "-m", "jobs.sample_join", "run", "--engine", "local", "--bootstrap-servers", self.bootstrap,
            "--redis-url", self._redis_db(2), "--group-id", "demo-join", "--task", TASK, "--window",
            f"{p.window_ms}ms", "--horizon", f"{p.horizon_ms}ms", "--metrics-port", str(self.join_port),
            "--exit-when-idle", "20s",
        ])

    def _wait_for_endpoints(self, endpoints: list[tuple[str, int]], timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = dict(endpoints)
        while waiting:
            self._check_alive(list(waiting))
            waiting = {name: port for name, port in waiting.items() if not scrape(port)}
            if waiting and time.monotonic() > deadline:
                raise DemoError(f"{', '.join(waiting)} did not serve metrics within {timeout_s:.0f} s")
            time.sleep(0.5)

    def _check_alive(self, names: list[str]) -> None:
        for name in names:
            child = self.children.started[name]
            code = child.proc.poll()
            if code not in (None, 0):
                tail = child.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise DemoError(f"{name} exited with {code} (log {child.log}): {' | '.join(tail)}")

    def _tick(self) -> bool:
        """One refresh; returns False once the stream is over (the join ended after its input went idle)."""
        snap = self.view.refresh()
        watermark = snap.join_watermark_ms()
        trainers = ["trainer", "trainer-naive"]
        if self.view.phase.startswith("training") and watermark is not None and watermark >= self.plan.train_until_ms:
            self.view.phase = "held-out hours: sidecars stopping (SIGTERM)"
            for name in trainers:
                self.children.started[name].signal(signal.SIGTERM)
            # A sidecar trains nothing that reaches its topic after the signal: samples emitted up to the
            # watermark read now (plus the join's allowed disorder) bound what the models saw.
            after = self.view.refresh().join_watermark_ms()
            self.seen_until_ms = int(after if after is not None else watermark)
            for name in trainers:
                self.children.started[name].wait_or_kill(timeout_s=30.0)
                self._check_alive([name])
            self.view.phase = "held-out hours: join only"
        self._check_alive(["generator", "join", *trainers])
        return self.children.started["join"].running()

    def stream(self) -> None:
        self._start_stream()
        self.view.phase = "training: events -> join -> samples -> sidecars"
        deadline = time.monotonic() + self.plan.streaming_wall_s + 240
        live = self.console.is_terminal
        last_line = 0.0
        with Live(self.view.render(START_MS), console=self.console, refresh_per_second=2, transient=False) if live \
                else _NoLive() as screen:
            while time.monotonic() < deadline:
                running = self._tick()
                if live:
                    screen.update(self.view.render(START_MS))
                elif time.monotonic() - last_line >= 10:
                    self.console.print(self.view.line(START_MS), highlight=False)
                    last_line = time.monotonic()
                if not running:
                    break
                time.sleep(1.0)
            else:
                raise DemoError(f"the stream did not end within {self.plan.streaming_wall_s + 240:.0f} s")
        if not self.seen_until_ms:
            raise DemoError("the join's watermark never reached the end of the training hours")

    # -- report ---------------------------------------------------------------------------------------------------

    def _trainer_json(self, *args: str) -> dict[str, Any]:
        done = subprocess.run([TRAINER_PY, "-m", "trainer", *args, "--json", "--quiet"], capture_output=True,
                              text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            raise DemoError(f"trainer {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
        return dict(json.loads(done.stdout))

    def _evaluate(self, model: Path, holdout: Path) -> dict[str, Any]:
        return self._trainer_json("evaluate", "--model", str(model), "--samples", str(holdout))

    def _score(self, loss: str, db: int, holdout: Path) -> dict[str, Any]:
        """The registry's current version (the one served) on the held-out rows; the sidecar's last
        version is its SIGTERM export, current unless the gate refused it."""
        model_dir = self.out / "models" / loss
        versions = self._trainer_json("versions", "--redis-url", self._redis_db(db), "--model-dir", str(model_dir))
        current = versions.get("current")
        scored = {"version": current, "last": max((v["version"] for v in versions.get("versions", [])), default=None)}
        if current is None:
            return {"versions": versions, "holdout": None, "scored": scored}
        return {"versions": versions, "holdout": self._evaluate(model_dir / str(current), holdout), "scored": scored}

    def report(self) -> dict[str, Any]:
        self.view.phase = "report"
        dump = report.dump_stream(self.bootstrap)
        truth = report.read_truth(self.out / "truth.jsonl")
        rows = report.holdout_rows(dump, truth, self.seen_until_ms, self.plan.window_ms)
        holdout = self.out / "holdout.jsonl"
        report.write_jsonl(holdout, rows)
        corrected, naive = self._score("pu", 0, holdout), self._score("naive", 1, holdout)
        start = None if self.day is None else self._evaluate(Path(self.day["export"]), holdout)
        result = {
            "plan": {"minutes": self.plan.minutes, "impressions": self.plan.impressions, "speedup": self.plan.speedup,
                     "seed": self.plan.seed, "day_impressions": self.plan.day_impressions,
                     "window_ms": self.plan.window_ms, "horizon_ms": self.plan.horizon_ms,
                     "train_until_ms": self.plan.train_until_ms, "seen_until_ms": self.seen_until_ms},
            "counts": report.check_counts(dump, truth, self.plan),
            "label_to_sample_latency": report.latency(dump),
            "day_model": self.day,
            "versions": corrected["versions"],
            "holdout": {"impressions": len(rows), "positives": sum(r["label"] for r in rows),
                        "corrected_pu": corrected["holdout"], "naive": naive["holdout"], "day_model": start,
                        "scored_versions": {"corrected_pu": corrected["scored"], "naive": naive["scored"]},
                        "nearer_bias_1": report.nearer_bias_1(corrected["holdout"], naive["holdout"])},
            "progress": self.view.series,
        }
        write_atomic(self.out / "report.json", json.dumps(result, indent=2))
        report.plot(self.view.series, corrected["versions"].get("versions", []), self.out / "report.png")
        return result

    def _start_day(self) -> DayModel | None:
        """The previous day generated and joined; its fit runs while the stack starts."""
        if not self.plan.day_impressions:
            return None
        day = DayModel(self.plan, self.out / "day")
        self.console.print(f"[bold]day-level model[/]: the previous day ({self.plan.day_impressions:,} impressions, "
                           "the same world), joined into complete samples, a shuffled fit ...")
        day.start(self.children, JOBS_PY, TRAINER_PY, DEMO_TRAINER_CONFIG, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return day

    def run(self) -> dict[str, Any]:
        try:
            day = self._start_day()
            self.console.print(f"[bold]local stack[/] in {self.out / 'stack'}")
            state = self.stack.up(log=lambda line: self.console.print(f"  {line}", highlight=False))
            self.bootstrap, self.redis = state.kafka_bootstrap_servers, state.redis_url
            self.day = None if day is None else day.finish()
            self.view.note = describe(self.day)
            self.console.print(self.view.note, highlight=False)
            self.stream()
            return self.report()
        finally:
            self.children.stop_all()
            self.stack.down(log=lambda line: self.console.print(f"  {line}", highlight=False))


class _NoLive:
    """Stands in for rich's Live when the console is not a terminal (log lines instead)."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: object) -> None:
        return None


def print_report(console: Console, result: dict[str, Any], out: Path) -> None:
    counts = result["counts"]
    console.print(f"\n{describe(result['day_model'])}", highlight=False)
    console.print(f"[bold]stream[/]: {counts['truth_impressions']:,} impressions, samples {counts['samples']}, "
                  f"unmatched {counts['unmatched']}, dead-lettered {counts['deadlettered']}")
    for name, ok in counts["checks"].items():
        console.print(f"  {'ok ' if ok else 'FAILED'} {name.replace('_', ' ')}")
    lat = result["label_to_sample_latency"]
    if lat["count"]:
        console.print(f"[bold]label -> sample latency[/]: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms "
                      f"({lat['count']:,} positives)")
    versions = result["versions"].get("versions", [])
    table = Table(title=f"model versions (current: {result['versions'].get('current')})")
    for column in ("version", "status", "samples trained", "AUC", "log loss", "bias"):
        table.add_column(column, justify="right")
    for v in versions:
        m = v.get("metrics") or {}
        table.add_row(str(v["version"]), v["status"], f"{v.get('samples_trained', 0):,}",
                      *(f"{m[k]:.4f}" if isinstance(m.get(k), float) else "-"
                        for k in ("auc", "logloss", "prediction_bias")))
    console.print(table)
    h = result["holdout"]
    scores = Table(title=f"held-out impressions, true labels ({h['impressions']:,} rows, {h['positives']:,} clicks)")
    for column in ("model", "AUC", "log loss", "prediction bias"):
        scores.add_column(column, justify="right")
    labels = {"day_model": "day-level model (the start)"}
    for name, scored in h["scored_versions"].items():
        labels[name] = f"{name.replace('_', ' ')} (version {scored['version']}, last {scored['last']})"
    for name in ("day_model", "corrected_pu", "naive"):
        s = h[name]
        if s is None and name == "day_model":
            continue
        s = s or {}
        scores.add_row(labels[name], *(f"{s[k]:.4f}" if isinstance(s.get(k), float) else "-"
                                       for k in ("auc", "logloss", "prediction_bias")))
    console.print(scores)
    nearer = h["nearer_bias_1"]
    if nearer is not None:
        pu, naive = h["corrected_pu"]["prediction_bias"], h["naive"]["prediction_bias"]
        console.print(f"held-out prediction bias: corrected PU {pu:.3f}, naive {naive:.3f}: "
                      f"the {'corrected PU' if nearer == 'corrected_pu' else 'naive'} model is nearer 1",
                      highlight=False)
    console.print(f"report: {out / 'report.json'}, plot: {out / 'report.png'}")


def _minutes(text: str) -> int:
    """The deprecated ``--minutes N`` (a number of minutes) as milliseconds."""
    try:
        return int(float(text) * 60_000)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    default_minutes = os.environ.get("DEMO_MINUTES", "3")
    length = parser.add_argument(
        "--duration", type=duration, metavar="DURATION", default=f"{default_minutes}m",
        help="about how long the demo runs (default: $DEMO_MINUTES minutes, else 3m)",
    )
    deprecated_alias(parser, length, "--minutes", convert=_minutes)
    parser.add_argument("--impressions", type=positive_int, help="impressions in all (default: 6000 per minute)")
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument(
        "--day-impressions", type=non_negative_int, default=DemoPlan.day_impressions, metavar="IMPRESSIONS",
        help="impressions of the previous day, the day-level model both sidecars start from (0: none, a cold start)",
    )
    parser.add_argument("--dir", type=Path, default=Path(".demo"), metavar="DIR", help="output folder")
    args = parser.parse_args(argv)
    console = Console()
    try:
        plan = DemoPlan.for_minutes(args.duration / 60_000, args.impressions, args.seed, args.day_impressions)
    except ValueError as exc:
        parser.error(f"--duration: {exc}")
    for tool in (JOBS_PY, TRAINER_PY):
        if not Path(tool).exists():
            return fail(PROG, f"{tool} is missing; run 'make setup' first", EXIT_FAILED)
    shutil.rmtree(args.dir, ignore_errors=True)
    (args.dir / "logs").mkdir(parents=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = Demo(plan, args.dir, console).run()
    except (CommonError, KeyboardInterrupt) as exc:
        return fail(PROG, exc, EXIT_FAILED)
    print_report(console, result, args.dir)
    return 0 if result["versions"].get("current") is not None else 1


if __name__ == "__main__":
    sys.exit(main())
