"""The demo's day-level model: the daily hot start (docs/trainer.md, "delayed feedback").

A previous day of the same world (the live stream's click model, its own draws), joined by
`jobs.sample_join replay` into complete samples, and a shuffled `trainer fit` over them to an export
that records the delay model; both sidecars warm-start from it, so the PU and the naive model begin
from the same model and the held-out comparison measures what the stream's labels did to each.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.output import AtomicFile
from infra.demo.plan import DemoPlan
from infra.demo.processes import Child, Children
from infra.errors import InfraError
from jobs.generate import build_parser, config_from_args
from jobs.synthetic import Generator, GeneratorConfig


class DayModelError(InfraError):
    """The day-level model could not be made; the message says which step failed and where its log is."""


def generator_config(flags: list[str]) -> GeneratorConfig:
    """A stream's generator settings, parsed as `jobs.generate` parses its command line."""
    return config_from_args(build_parser().parse_args(flags))


def day_generator(plan: DemoPlan, on_truth: Callable[[dict[str, Any]], None] | None = None) -> Generator:
    """The previous day: the live stream's own generator flags (one click model, users, items, click
    rate and delays), its impressions over the 24 h before the live start, and its own event draws:
    with the live seed's draws the day would replay the live stream itself (held-out hour included),
    only shifted in time."""
    gen = Generator(generator_config(plan.day_generator_flags()), on_truth)
    gen.rng = random.Random(f"day-{plan.seed}")  # the draws only: gen.model was built from the seed already
    return gen


def generate_day(plan: DemoPlan, events: Path) -> dict[str, Any]:
    """The previous day's events as a JSONL file (what `jobs.generate --out` writes); returns its statistics."""
    gen = day_generator(plan)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with AtomicFile(events) as out:
        for _, event in gen.events():
            out.write((dumps(event) + "\n").encode())
        out.commit()
    return dict(gen.stats.to_json())


def join_day(plan: DemoPlan, jobs_py: str, events: Path, samples: Path, env: dict[str, str]) -> dict[str, Any]:
    """`jobs.sample_join replay` with the live join's window and horizon: every label is in the file,
    so every sample comes out complete. Returns the replay's JSON summary."""
    done = subprocess.run(
        [jobs_py, "-m", "jobs.sample_join", "replay", "--events", str(events), "--out", str(samples),
         "--task", "click", "--window", f"{plan.window_ms}ms", "--horizon", f"{plan.horizon_ms}ms",
         "--json", "--quiet"],
        capture_output=True, text=True, check=False, env=env,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:]
        raise DayModelError(f"the day's join (jobs.sample_join replay) exited with {done.returncode}: {tail}")
    return dict(json.loads(done.stdout))


@dataclass
class DayModel:
    """Made in two halves so that the fit (TensorFlow's start included) overlaps the stack's start."""

    plan: DemoPlan
    directory: Path
    impressions: int = 0
    fit_child: Child | None = None
    fit_started: float = 0.0

    @property
    def export(self) -> Path:
        return self.directory / "model"

    def start(self, children: Children, jobs_py: str, trainer_py: str, trainer_config: Path,
              env: dict[str, str]) -> None:
        """Generate and join the day (seconds), then start the shuffled fit as a child process."""
        events, samples = self.directory / "events.jsonl", self.directory / "samples.jsonl"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.impressions = int(generate_day(self.plan, events)["impressions"])
        join_day(self.plan, jobs_py, events, samples, env)
        self.fit_started = time.monotonic()
        self.fit_child = children.start(
            "day-fit",
            [trainer_py, "-m", "trainer", "fit", "--samples", str(samples), "--export", str(self.export),
             "--config", str(trainer_config), "--seed", str(self.plan.seed), "--quiet"],
            stdout=self.directory / "fit.json",
        )

    def finish(self, timeout_s: float = 300.0) -> dict[str, Any]:
        """Wait for the fit; returns what the report and the live view show of the model."""
        child = self.fit_child
        if child is None:
            raise DayModelError("the day-level fit was never started")
        deadline = time.monotonic() + timeout_s
        while child.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        if child.running():
            child.stop()
            raise DayModelError(f"the day-level fit did not end within {timeout_s:.0f} s (log {child.log})")
        wall_s = time.monotonic() - self.fit_started
        code = child.proc.returncode
        if code != 0:
            tail = child.log.read_text(errors="replace").strip().splitlines()[-2:]
            raise DayModelError(f"the day-level fit exited with {code} (log {child.log}): {' | '.join(tail)}")
        summary = json.loads((self.directory / "fit.json").read_text())
        return {"impressions": self.impressions, "samples": int(summary["samples"]),
                "fit_s": float(summary["seconds"]), "fit_wall_s": round(wall_s, 1),
                "export": str(self.export)}


def describe(day: dict[str, Any] | None) -> str:
    """One line for the live view and the report."""
    if day is None:
        return "no day-level model: both sidecars start cold"
    return (f"day-level model: {day['samples']:,} samples, fitted in {day['fit_s']:.1f} s "
            f"({day['fit_wall_s']:.0f} s with the command's start); both sidecars start from it")
