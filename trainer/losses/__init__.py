"""Delayed-feedback losses, one module each (see docs/trainer.md).

The names and parameters (:mod:`trainer.losses.params`) are importable from here without TensorFlow
(the config and the CLIs read them); the loss classes and :func:`~trainer.losses.registry.get_loss`
live in :mod:`trainer.losses.registry`.
"""

from trainer.losses.params import LOSS_NAMES, LossName, LossParams

__all__ = ["LOSS_NAMES", "LossName", "LossParams"]
