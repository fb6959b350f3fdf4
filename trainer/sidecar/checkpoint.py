"""Checkpoints of the sidecar: the training state and the stream position, as one unit.

``<model-dir>/checkpoints/`` holds the ``tf.train.CheckpointManager`` files (model, both optimizers,
vocabularies, step; ``trainer.json`` with the architecture), a dedup file and the gate's evidence and
stream statistics (:class:`~trainer.sidecar.scores.ScoreLog`, so a restart does not start the gate from
nothing), and
``sidecar.json``, written last and atomically: it names the checkpoint and dedup file and records the
input offsets whose samples the checkpoint contains and the count of distinct samples trained. It is
the commit point: a crash before it leaves the previous checkpoint in force. Offsets are committed
to Kafka only after it (by the caller).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.output import AtomicFile
from trainer.sidecar.dedup import Dedup
from trainer.sidecar.errors import SidecarError
from trainer.sidecar.scores import ScoreLog

if TYPE_CHECKING:
    from trainer.config import TrainerConfig
    from trainer.state import TrainerState

log = logging.getLogger("trainer.sidecar")

POSITION_FILE = "sidecar.json"


@dataclass
class Position:
    """What a checkpoint covers: offsets (partition -> next offset), distinct samples trained."""

    offsets: dict[int, int] = field(default_factory=dict)
    samples_trained: int = 0
    checkpoint: str | None = None  # the tf.train checkpoint prefix, relative to the directory
    dedup_file: str | None = None
    scores_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "samples_trained": self.samples_trained,
            "checkpoint": self.checkpoint,
            "dedup": self.dedup_file,
            "scores": self.scores_file,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Position:
        return cls(
            offsets={int(p): int(o) for p, o in data["offsets"].items()},
            samples_trained=int(data["samples_trained"]),
            checkpoint=data.get("checkpoint"),
            dedup_file=data.get("dedup"),
            scores_file=data.get("scores"),
            extra=dict(data.get("extra") or {}),
        )


class CheckpointStore:
    def __init__(self, directory: Path, keep: int):
        self.directory = directory
        self.keep = keep
        self._saved_step: int | None = None

    def invalidate(self) -> None:
        """The state was replaced (warm start): the next save writes it even at the same step."""
        self._saved_step = None

    def load(self) -> Position | None:
        path = self.directory / POSITION_FILE
        if not path.is_file():
            return None
        try:
            return Position.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SidecarError(f"cannot read checkpoint position {path}: {exc}") from exc

    def save(self, state: TrainerState, position: Position, dedup: Dedup, scores: ScoreLog) -> Position:
        """Write the state (unless unchanged since the last save), the dedup set, the recent scores,
        then the position."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._saved_step != state.step or position.checkpoint is None:
            prefix = state.save_checkpoint(self.directory, max_to_keep=self.keep)
            position.checkpoint = Path(prefix).name
            self._saved_step = state.step
        previous = (position.dedup_file, position.scores_file)
        position.dedup_file = f"dedup-{position.samples_trained}.json"
        dedup.save(self.directory / position.dedup_file)
        position.scores_file = f"scores-{position.samples_trained}.npz"
        with AtomicFile(self.directory / position.scores_file) as out:
            np.savez(out.file, **scores.to_arrays())  # type: ignore[arg-type]
            out.commit()
        with AtomicFile(self.directory / POSITION_FILE) as out:
            out.write(json.dumps(position.to_json(), separators=(",", ":")).encode())
            out.commit()
        for name in previous:
            if name and name not in (position.dedup_file, position.scores_file):
                (self.directory / name).unlink(missing_ok=True)
        return position

    def load_scores(self, position: Position, scores: ScoreLog) -> None:
        if position.scores_file is None:
            return
        path = self.directory / position.scores_file
        try:
            with np.load(path) as data:
                scores.restore(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SidecarError(f"cannot read the gate's evidence {path}: {exc}") from exc

    def restore(self, config: TrainerConfig, position: Position) -> TrainerState:
        """A state rebuilt from the checkpoint ``position`` names (architecture from trainer.json)."""
        import tensorflow as tf

        from trainer.warm_start import checkpointed_state

        state = checkpointed_state(self.directory, config)
        prefix = str(self.directory / str(position.checkpoint))
        try:
            state.restore_checkpoint(prefix)
        except (tf.errors.OpError, ValueError, AssertionError) as exc:
            raise SidecarError(f"cannot restore checkpoint {prefix}: {exc}") from exc
        self._saved_step = state.step
        log.info(
            "resumed from checkpoint",
            extra={"checkpoint": prefix, "step": state.step, "samples_trained": position.samples_trained},
        )
        return state

    def load_dedup(self, position: Position, horizon_ms: int, max_entries: int) -> Dedup:
        if position.dedup_file is None:
            return Dedup(horizon_ms, max_entries)
        path = self.directory / position.dedup_file
        try:
            return Dedup.load(path, horizon_ms, max_entries)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SidecarError(f"cannot read the dedup state {path}: {exc}") from exc
