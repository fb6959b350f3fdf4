"""``python -m trainer embeddings``: what the dynamic vocabularies hold, per field, to tune them.

Per tracked field: IDs admitted, pending (seen, not admitted yet), evicted and refused; a histogram of
the admitted IDs' sightings in log2 buckets; the oldest last-seen step against the current step; the
IDs seen most. What to tune from each figure (``admit_after``, ``evict_after_steps``, the capacity) is
in docs/cli.md.

It reads the model directory on disk, never Redis (disk is the registry's source of truth): by default
the current version's export (``<model-dir>/current.json`` names it; the vocabulary is in its
``assets.extra/trainer.json``), or ``--model-version N``'s (``--version`` prints the
project's version, as on every command), or with ``--checkpoint`` (and when nothing is
published yet) the latest checkpoint, which is newer than any export. A directory that is itself an
export (``fit --export``) or a checkpoint directory (``fit --checkpoint-dir``) is read as such. Only the
checkpoint needs TensorFlow (the vocabulary is a Python-state entry of the ``tf.train`` checkpoint).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.cli import positive_int
from trainer.errors import ModelDirError, TrainerError
from trainer.vocab import DynamicVocab, VocabSet

COMMAND = "embeddings"
TOP = 10
EXPORT_META = Path("assets.extra") / "trainer.json"
CURRENT_FILE = "current.json"  # the sidecar's pointer (trainer.sidecar.versions), read without its imports
CHECKPOINTS = "checkpoints"  # the sidecar's checkpoint directory under the model dir
POSITION_FILE = "sidecar.json"  # names the sidecar's committed checkpoint
CHECKPOINT_STATE = "checkpoint"  # tf.train.CheckpointManager's state file
VOCAB_KEY = "vocab/.ATTRIBUTES/py_state"  # TrainerState.checkpoint()'s vocab entry
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


class EmbeddingsError(TrainerError):
    """The model directory's vocabulary cannot be read (a broken export or checkpoint): exit 1."""


@dataclass(frozen=True)
class Source:
    """Where the vocabularies were read: ``export`` (``version`` when a numbered one) or ``checkpoint``."""

    kind: str
    path: Path
    version: int | None = None
    why: str = ""

    def describe(self) -> str:
        what = f"version {self.version}'s export" if self.version is not None else self.kind
        return f"{what} {self.path}" + (f" ({self.why})" if self.why else "")


# -- where to read ---------------------------------------------------------------------------------


def _is_export(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


def _is_checkpoint_dir(path: Path) -> bool:
    return (path / CHECKPOINT_STATE).is_file()


def _versions_on_disk(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and _is_export(p))


def _read_current(model_dir: Path) -> int | None:
    path = model_dir / CURRENT_FILE
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["current"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbeddingsError(f"cannot read the current pointer {path}: {exc} (expected {{\"current\": N}})") from exc


def locate(model_dir: Path, version: int | None = None, checkpoint: bool = False) -> Source:
    """The export or checkpoint to read in ``model_dir`` (see the module's doc)."""
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist")
    checkpoints = model_dir / CHECKPOINTS if _is_checkpoint_dir(model_dir / CHECKPOINTS) else None
    if checkpoints is None and _is_checkpoint_dir(model_dir):
        checkpoints = model_dir
    if checkpoint:
        if checkpoints is None:
            raise ModelDirError(f"{model_dir} holds no checkpoint (neither {CHECKPOINTS}/ nor its own)")
        return Source("checkpoint", checkpoints)
    if version is not None:
        path = model_dir / str(version)
        if not _is_export(path):
            on_disk = _versions_on_disk(model_dir)
            raise ModelDirError(f"version {version} is not an export in {model_dir} (versions on disk: "
                                f"{', '.join(map(str, on_disk)) or 'none'})")
        return Source("export", path, version)
    if _is_export(model_dir):
        return Source("export", model_dir)
    current = _read_current(model_dir)
    if current is not None:
        path = model_dir / str(current)
        if not _is_export(path):
            raise ModelDirError(f"the current version {current} ({model_dir / CURRENT_FILE}) is not an export: {path}")
        return Source("export", path, current, "the current version")
    if checkpoints is not None:
        why = "" if checkpoints == model_dir else "no current version: the latest checkpoint"
        return Source("checkpoint", checkpoints, why=why)
    raise ModelDirError(
        f"{model_dir} holds no current version ({CURRENT_FILE}), export or checkpoint: nothing to read"
    )


# -- reading -------------------------------------------------------------------------------------


def read(source: Source) -> tuple[VocabSet, int]:
    """The vocabularies and the train step they were saved at."""
    if source.kind == "export":
        return _read_export(source.path)
    return _read_checkpoint(source.path)


def _parse(text: str | bytes, where: str) -> VocabSet:
    try:
        return VocabSet.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbeddingsError(f"the vocabulary in {where} cannot be read: {exc}") from exc


def _read_export(directory: Path) -> tuple[VocabSet, int]:
    path = directory / EXPORT_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EmbeddingsError(f"cannot read {path}: {exc.strerror or exc} (not exported by this trainer?)") from exc
    except ValueError as exc:
        raise EmbeddingsError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("vocab"), dict):
        raise EmbeddingsError(f"{path} holds no vocabulary (expected a 'vocab' object)")
    return _parse(json.dumps(meta["vocab"]), str(path)), int(meta.get("step", 0))


def _read_checkpoint(directory: Path) -> tuple[VocabSet, int]:
    from trainer.quiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    prefix: str | None = None
    position = directory / POSITION_FILE
    if position.is_file():  # the sidecar's committed checkpoint (a newer one may be half-way)
        try:
            name = json.loads(position.read_text(encoding="utf-8")).get("checkpoint")
        except (OSError, ValueError, AttributeError) as exc:
            raise EmbeddingsError(f"cannot read the checkpoint position {position}: {exc}") from exc
        prefix = str(directory / name) if name else None
    prefix = prefix or tf.train.latest_checkpoint(str(directory))
    if prefix is None:
        raise ModelDirError(f"{directory} holds no checkpoint")
    try:
        reader = tf.train.load_checkpoint(prefix)
        text = reader.get_tensor(VOCAB_KEY)
        step = int(reader.get_tensor(STEP_KEY)) if reader.has_tensor(STEP_KEY) else 0
    except (tf.errors.OpError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise EmbeddingsError(f"cannot read the vocabulary of checkpoint {prefix}: {reason}") from exc
    return _parse(text, prefix), step


# -- the report ----------------------------------------------------------------------------------


def log2_histogram(counts: np.ndarray) -> list[dict[str, int]]:
    """IDs per bucket of sightings: [1, 1], [2, 3], [4, 7], ... (only the buckets up to the largest)."""
    counts = np.asarray(counts, np.int64)
    counts = counts[counts > 0]
    if counts.size == 0:
        return []
    buckets = np.floor(np.log2(counts)).astype(np.int64)
    per = np.bincount(buckets)
    return [{"from": 1 << k, "to": (2 << k) - 1, "ids": int(n)} for k, n in enumerate(per)]


def field_report(name: str, vocab: DynamicVocab, step: int, top: int) -> dict[str, Any]:
    keys, sightings, last_seen = vocab.id_stats()
    pending_keys, pending_sightings, _ = vocab.pending_stats()
    order = np.lexsort((np.arange(len(keys)), -sightings))[:top]  # most seen first; ties by slot
    oldest = int(last_seen.min()) if len(keys) else None
    return {
        "field": name,
        "capacity": vocab.capacity,
        "slots": vocab.capacity - 1,  # slot 0 is the shared OOV row
        "admitted": len(keys),
        "fill": round(len(keys) / (vocab.capacity - 1), 4),
        "pending": len(pending_keys),
        "admissions": vocab.admitted,
        "evicted": vocab.evicted,
        "displaced": vocab.displaced,  # of the evicted: for room at the memory budget
        "forgotten": vocab.forgotten,  # pending IDs dropped for room at the memory budget
        "refused": vocab.rejected,
        "admit_after": vocab.admit_after,
        "evict_after_steps": vocab.evict_after,
        "sightings": int(sightings.sum()),
        "pending_sightings": int(pending_sightings.sum()),
        "histogram": log2_histogram(sightings),
        "pending_histogram": log2_histogram(pending_sightings),
        "oldest_last_seen_step": oldest,
        "oldest_idle_steps": None if oldest is None else step - oldest,
        "top": [
            {"id": keys[i], "sightings": int(sightings[i]), "last_seen_step": int(last_seen[i])} for i in order
        ],
    }


def report(source: Source, vocabs: VocabSet, step: int, top: int = TOP) -> dict[str, Any]:
    return {
        "source": {"kind": source.kind, "path": str(source.path), "version": source.version, "why": source.why},
        "step": step,
        "fields": [field_report(name, vocab, step, top) for name, vocab in vocabs.vocabs.items()],
    }


def render(data: dict[str, Any]) -> str:
    """The report as text: a block per field."""
    source = data["source"]
    lines = [f"{Source(source['kind'], Path(source['path']), source['version'], source['why']).describe()}, "
             f"step {data['step']:,}"]
    for f in data["fields"]:
        evict = "never" if f["evict_after_steps"] is None else f"{f['evict_after_steps']:,} idle steps"
        lines += [
            "",
            f"{f['field']}: {f['admitted']:,} admitted of {f['slots']:,} slots ({f['fill']:.1%}), "
            f"{f['pending']:,} pending, {f['evicted']:,} evicted, {f['refused']:,} refused "
            f"(admit after {f['admit_after']} sightings, evict after {evict})",
        ]
        if f["displaced"] or f["forgotten"]:
            lines.append(f"  at the memory budget: {f['displaced']:,} least recently seen IDs evicted for room, "
                         f"{f['forgotten']:,} pending IDs forgotten")
        for title, histogram in (("admitted", f["histogram"]), ("pending", f["pending_histogram"])):
            if not histogram:
                continue
            lines.append(f"  sightings of {title} IDs:")
            width = max(b["ids"] for b in histogram)
            first = next(i for i, b in enumerate(histogram) if b["ids"])
            for b in histogram[first:]:
                bucket = str(b["from"]) if b["from"] == b["to"] else f"{b['from']}-{b['to']}"
                bar = "#" * (0 if not b["ids"] else max(1, round(40 * b["ids"] / width)))
                lines.append(f"    {bucket:>13} {b['ids']:>10,} {bar}")
        if f["oldest_last_seen_step"] is not None:
            lines.append(
                f"  oldest last seen: step {f['oldest_last_seen_step']:,} (idle for {f['oldest_idle_steps']:,} steps)"
            )
        if f["top"]:
            top = ", ".join(f"{t['id']} ({t['sightings']:,})" for t in f["top"])
            lines.append(f"  most seen: {top}")
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """``embeddings`` under the trainer's subcommands."""
    text = "per field, what the dynamic vocabularies hold: to tune admission, eviction and capacity"
    p = sub.add_parser(
        COMMAND,
        help=text,
        description="Per tracked field: IDs admitted, pending, evicted and refused, the histogram of sightings, "
        "the oldest last-seen step and the IDs seen most, read from the model directory on disk (the current "
        "version's export, --model-version N's, or the latest checkpoint), never from Redis.",
    )
    p.add_argument("--model-dir", metavar="DIR",
                   help="the sidecar's model directory, an export or a checkpoint directory (overrides "
                   "sidecar.model_dir) (default: the config's)")
    p.add_argument("--config", metavar="CONFIG.yaml",
                   help="trainer config file: its sidecar.model_dir (default: none: give --model-dir)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model-version", type=positive_int, metavar="VERSION",
                       help="this version's export (default: the current version)")
    which.add_argument("--checkpoint", action="store_true",
                       help="the latest checkpoint (newer than any export) instead of an export")
    p.add_argument("--top", type=positive_int, default=TOP, metavar="N", help="the IDs seen most, per field")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")


def run(args: argparse.Namespace) -> int:
    from trainer.config import TrainerConfig
    from trainer.sidecar.errors import UsageError

    if args.model_dir is None and args.config is None:
        raise UsageError("give --model-dir DIR (or --config YAML naming sidecar.model_dir)")
    model_dir = Path(TrainerConfig.load(args.config, {"sidecar.model_dir": args.model_dir}).sidecar.model_dir)
    source = locate(model_dir, args.model_version, args.checkpoint)
    vocabs, step = read(source)
    data = report(source, vocabs, step, args.top)
    print(json.dumps(data, sort_keys=True) if args.json else render(data))
    return 0
