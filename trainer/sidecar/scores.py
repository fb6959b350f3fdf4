"""The most recent samples' labels and predictions: the held-out slice of the gate and the live data
of the rollback check.

Every batch is scored before it is trained on, by the training state (progressive validation: each
prediction is made on a sample the model has not seen yet; the train step's own forward pass, before
its update, gives them) and by the current published version; the window keeps the last ``capacity``
of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer import metrics


def calibrate(probability: np.ndarray, mode: str, max_probability: float) -> np.ndarray:
    """What the exported model serves for the model's probability (see trainer.layers.Calibration)."""
    if mode == "identity":
        return probability
    b = np.clip(probability, 0.0, max_probability / (1.0 + max_probability))
    return b / (1.0 - b)


class ScoreWindow:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.labels = np.zeros(0, np.float32)
        self.progressive = np.zeros(0, np.float32)
        self.current = np.zeros(0, np.float32)  # NaN where no current version scored the sample
        self.current_scored = 0  # samples scored by the current version since it became current

    def add(self, labels: np.ndarray, progressive: np.ndarray, current: np.ndarray | None) -> None:
        n = len(labels)
        cur = np.full(n, np.nan, np.float32) if current is None else current.astype(np.float32)
        if current is not None:
            self.current_scored += n
        keep = self.capacity
        self.labels = np.concatenate([self.labels, labels.astype(np.float32)])[-keep:]
        self.progressive = np.concatenate([self.progressive, progressive.astype(np.float32)])[-keep:]
        self.current = np.concatenate([self.current, cur])[-keep:]

    def __len__(self) -> int:
        return len(self.labels)

    def restore(self, labels: np.ndarray, progressive: np.ndarray) -> None:
        """The window saved with a checkpoint (the current version's scores are not kept)."""
        self.labels = labels.astype(np.float32)[-self.capacity :]
        self.progressive = progressive.astype(np.float32)[-self.capacity :]
        self.pointer_moved()

    def pointer_moved(self) -> None:
        """The current version changed: its predictions so far were another version's."""
        self.current = np.full(len(self.labels), np.nan, np.float32)
        self.current_scored = 0

    def candidate_metrics(self, n: int) -> dict[str, Any]:
        """Progressive metrics of the training state on the last ``n`` samples."""
        return metrics.evaluate(self.labels[-n:], self.progressive[-n:])

    def current_metrics(self, n: int) -> dict[str, Any] | None:
        """The current version's metrics on the last ``n`` samples (None unless it scored them all)."""
        cur = self.current[-n:]
        if not len(cur) or np.isnan(cur).any():
            return None
        return metrics.evaluate(self.labels[-n:], cur)
