"""Keras layers of the Wide & Deep model (one module per layer)."""

from trainer.layers.calibration import Calibration
from trainer.layers.deep import DeepLayer
from trainer.layers.fm import FactorizationMachine
from trainer.layers.wide import WideLayer

__all__ = ["Calibration", "DeepLayer", "FactorizationMachine", "WideLayer"]
