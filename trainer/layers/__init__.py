"""Keras layers of the trainer's models (one module per layer)."""

from trainer.layers.calibration import Calibration
from trainer.layers.cross import CrossNetwork
from trainer.layers.deep import DeepLayer
from trainer.layers.embedding import FieldEmbedding
from trainer.layers.fm import FactorizationMachine
from trainer.layers.mlp import MLP
from trainer.layers.pruned import PrunedTable
from trainer.layers.similarity import Similarity
from trainer.layers.wide import WideLayer

__all__ = [
    "MLP",
    "Calibration",
    "CrossNetwork",
    "DeepLayer",
    "FactorizationMachine",
    "FieldEmbedding",
    "PrunedTable",
    "Similarity",
    "WideLayer",
]
