"""The losses' names and parameters, without TensorFlow: the config (``loss:``, trainer/config.py) and
the CLIs read them, the loss classes take them. The losses never read the trainer's config; its
``loss:`` section turns into these (:meth:`trainer.config.LossConfig.params`), where the defaults live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

LossName = Literal["naive", "pu", "fnw", "fnc", "esdfm", "defer"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)


@dataclass(frozen=True)
class LossParams:
    """What the losses' train-time terms depend on (docs/trainer.md, Delayed feedback)."""

    pu_logit_bound: float  # pu: a LATE_POSITIVE's undo term -log(1 - f) is taken at min(logit, bound)
    pu_nnpu: bool  # pu: the non-negative risk guard (nnPU)
    pu_nnpu_beta: float  # pu: the guard fires when the batch's negative risk is below -beta
    pu_nnpu_gamma: float  # pu: ... and then ascends it with this weight
    esdfm_aux_weight: float  # esdfm, defer: weight of the auxiliary heads' losses
