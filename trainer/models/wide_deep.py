"""Wide & Deep in the iQIYI variant: each part feeds an FM layer before the fusion (docs/trainer.md).

    logit = wide.linear + FM(wide factors) + FM(deep vectors) + MLP(deep embeddings, dense)

The wide variables (bias, id/cross/dense weights, wide FM factors) and the auxiliary heads' biases are
trained with FTRL, the deep ones (embeddings, dense vectors, MLP, the heads' kernels) with Adam, both in
the one train step of :class:`~trainer.models.base.TrainableModel`, which the offline fit and the
streaming sidecar share.
"""

from __future__ import annotations

from typing import Any

import keras

from trainer.features import FeatureSpec
from trainer.layers import DeepLayer, FactorizationMachine, WideLayer
from trainer.models.base import TrainableModel, make_aux_heads, transform_dense

__all__ = ["WideDeepModel", "transform_dense"]


@keras.saving.register_keras_serializable(package="trainer")
class WideDeepModel(TrainableModel):
    """Inputs ``{"ids": int [batch, fields], "dense": float [batch, dense]}`` (see :mod:`trainer.features`).

    Outputs ``{"logit": [batch]}``, plus ``dp_logit`` and ``rn_logit`` with ``aux_heads`` (ES-DFM)
    and ``l2`` (the batch's embedding penalty) when training.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        embedding_dim: int = 8,
        wide_factor_dim: int = 4,
        hidden_units: tuple[int, ...] | list[int] = (64, 32),
        init_stddev: float = 0.01,
        dropout: float = 0.0,
        bias_init: float = 0.0,
        aux_heads: bool = False,
        aux_bias_init: tuple[float, float] | list[float] = (-4.0, 4.0),
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.spec_json = spec
        self.spec = FeatureSpec.from_json(spec)
        self.embedding_dim = int(embedding_dim)
        self.wide_factor_dim = int(wide_factor_dim)
        self.hidden_units = [int(n) for n in hidden_units]
        self.init_stddev = float(init_stddev)
        self.dropout = float(dropout)
        self.bias_init = float(bias_init)
        self.aux_heads = bool(aux_heads)
        self.aux_bias_init = [float(x) for x in aux_bias_init]
        self.seed = int(seed)
        self._n_base = len(self.spec.base_fields)
        num_dense = len(self.spec.dense)
        self.wide = WideLayer(
            self.spec.base_sizes,
            self.spec.cross_sizes,
            num_dense,
            wide_factor_dim,
            init_stddev,
            bias_init,
            seed=seed + 1000,
            name="wide",
        )
        self.deep = DeepLayer(
            self.spec.base_sizes,
            num_dense,
            embedding_dim,
            self.hidden_units,
            init_stddev,
            dropout,
            seed=seed + 2000,
            column_groups=self.spec.column_groups,
            name="deep",
        )
        self.wide_fm = FactorizationMachine(name="wide_fm")
        self.deep_fm = FactorizationMachine(name="deep_fm")
        if self.aux_heads:
            self.dp_head, self.rn_head = make_aux_heads(seed, self.aux_bias_init)

    def build(self, input_shape: Any = None) -> None:
        self.wide.build()
        self.deep.build()
        if self.aux_heads:
            self.dp_head.build((None, self.hidden_units[-1]))
            self.rn_head.build((None, self.hidden_units[-1]))
        self.built = True

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        ids = keras.ops.cast(inputs["ids"], "int32")
        base_ids, cross_ids = ids[:, : self._n_base], ids[:, self._n_base :]
        dense = transform_dense(keras.ops.cast(inputs["dense"], "float32"))
        wide = self.wide(base_ids, cross_ids, dense)
        deep = self.deep(base_ids, dense, training=training)
        logit = wide["linear"] + self.wide_fm(wide["factors"]) + self.deep_fm(deep["vectors"]) + deep["output"]
        outputs = {"logit": logit}
        if self.aux_heads:
            # The heads read the main model's representation without training it (as ES-DFM's
            # separate models would not): the importance weights must not bend what they weight.
            hidden = keras.ops.stop_gradient(deep["hidden"])
            outputs["dp_logit"] = self.dp_head(hidden)[:, 0]
            outputs["rn_logit"] = self.rn_head(hidden)[:, 0]
        if training:
            outputs["l2"] = deep["l2"]
        return outputs

    # -- training ----------------------------------------------------------------------------------

    def ftrl_layers(self) -> list[Any]:
        return [self.wide]

    def row_tables(self) -> list[tuple[Any, str]]:
        return self.wide.row_tables() + self.deep.row_tables()

    @property
    def bias_variable(self) -> Any:
        return self.wide.bias

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "spec": self.spec_json,
            "embedding_dim": self.embedding_dim,
            "wide_factor_dim": self.wide_factor_dim,
            "hidden_units": self.hidden_units,
            "init_stddev": self.init_stddev,
            "dropout": self.dropout,
            "bias_init": self.bias_init,
            "aux_heads": self.aux_heads,
            "aux_bias_init": self.aux_bias_init,
            "seed": self.seed,
        }
