"""Delayed-feedback losses, one module each (see docs/trainer.md).

The loss names are defined here, once, without importing TensorFlow (the config and the CLI read
them); the classes and :func:`get_loss` live in :mod:`trainer.losses.registry` and are importable from
here too (loaded on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

LossName = Literal["naive", "pu", "fnw", "fnc", "esdfm"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)

if TYPE_CHECKING:
    from trainer.losses.registry import (
        LOSSES,
        DelayedFeedbackLoss,
        ESDFMLoss,
        FNCLoss,
        FNWLoss,
        NaiveLoss,
        PULoss,
        get_loss,
    )

__all__ = [
    "LOSSES",
    "LOSS_NAMES",
    "DelayedFeedbackLoss",
    "ESDFMLoss",
    "FNCLoss",
    "FNWLoss",
    "LossName",
    "NaiveLoss",
    "PULoss",
    "get_loss",
]
_REGISTRY = frozenset(__all__) - {"LOSS_NAMES", "LossName"}


def __getattr__(name: str) -> Any:
    if name in _REGISTRY:
        from trainer.losses import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'trainer.losses' has no attribute {name!r}")
