"""The registry of the delayed-feedback losses: :func:`get_loss` picks one by name."""

from trainer.losses.base import DelayedFeedbackLoss
from trainer.losses.defer import DEFERLoss
from trainer.losses.esdfm import ESDFMLoss
from trainer.losses.fnc import FNCLoss
from trainer.losses.fnw import FNWLoss
from trainer.losses.naive import NaiveLoss
from trainer.losses.params import LOSS_NAMES, LossParams
from trainer.losses.pu import PULoss

LOSSES: dict[str, type[DelayedFeedbackLoss]] = {
    cls.name: cls for cls in (NaiveLoss, PULoss, FNWLoss, FNCLoss, ESDFMLoss, DEFERLoss)
}
if tuple(LOSSES) != LOSS_NAMES:
    raise ImportError(f"loss registry {tuple(LOSSES)} does not match LOSS_NAMES {LOSS_NAMES}")


def get_loss(name: str, params: LossParams) -> DelayedFeedbackLoss:
    """The loss ``name`` (one of :data:`~trainer.losses.params.LOSS_NAMES`) with ``params``."""
    return LOSSES[name](params)


__all__ = [
    "LOSSES", "DEFERLoss", "DelayedFeedbackLoss", "ESDFMLoss", "FNCLoss", "FNWLoss", "NaiveLoss", "PULoss", "get_loss"
]
