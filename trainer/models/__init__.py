"""The trainer's models (``model.name``), one module each, on one shared train step (:mod:`.base`).

- ``wide_deep`` (:mod:`.wide_deep`): Wide & Deep with an FM layer on each part; the default.
- ``dual_dnn`` (:mod:`.dual_dnn`): a teacher (the Wide & Deep model plus a cross network) and a
  lighter student sharing its embeddings, trained together; the student is served.
- ``two_tower`` (:mod:`.two_tower`): user and item towers scored by similarity, distilled from a fine
  model, its all-zero embedding rows pruned from the export.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.config import ModelConfig
from trainer.features import FeatureSpec
from trainer.models.base import TrainableModel
from trainer.models.dual_dnn import DualDNNModel
from trainer.models.two_tower import TwoTowerModel
from trainer.models.wide_deep import WideDeepModel

__all__ = ["DualDNNModel", "TrainableModel", "TwoTowerModel", "WideDeepModel", "build_model"]


def build_model(
    config: ModelConfig,
    spec: FeatureSpec,
    *,
    aux_heads: bool = False,
    bias_init: float = 0.0,
    aux_bias_init: Sequence[float] = (-4.0, 4.0),
    seed: int = 0,
) -> TrainableModel:
    """The model ``config.name`` for the feature layout ``spec``, its variables created."""
    common: dict[str, Any] = {
        "bias_init": bias_init,
        "aux_heads": aux_heads,
        "aux_bias_init": tuple(aux_bias_init),
        "dropout": config.dropout,
        "seed": seed,
        "name": config.name,
    }
    model: TrainableModel
    if config.name == "dual_dnn":
        d = config.dual_dnn
        model = DualDNNModel(
            spec.to_json(),
            embedding_dim=config.embedding_dim,
            wide_factor_dim=config.wide_factor_dim,
            hidden_units=config.hidden_units,
            cross_layers=d.cross_layers,
            student_hidden_units=d.student_hidden_units,
            student_fm=d.student_fm,
            teacher_weight=d.teacher_weight,
            distill_weight=d.distill_weight,
            hint_weight=d.hint_weight,
            init_stddev=config.init_stddev,
            **common,
        )
    elif config.name == "two_tower":
        t = config.two_tower
        model = TwoTowerModel(
            spec.to_json(),
            item_fields=t.item_fields,
            ignore_fields=t.ignore_fields,
            embedding_dim=config.embedding_dim,
            user_units=t.user_units,
            item_units=t.item_units,
            output_dim=t.output_dim,
            similarity=t.similarity,
            init_temperature=t.init_temperature,
            embedding_l1=t.embedding_l1,
            distill_weight=t.distill_weight if t.distill_from is not None else 0.0,
            distill_ramp_steps=t.distill_ramp_steps,
            prune_export=t.prune_export,
            **common,
        )
    else:
        model = WideDeepModel(
            spec.to_json(),
            embedding_dim=config.embedding_dim,
            wide_factor_dim=config.wide_factor_dim,
            hidden_units=config.hidden_units,
            init_stddev=config.init_stddev,
            **common,
        )
    return model.build_from_spec()
