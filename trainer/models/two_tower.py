"""Dual-tower coarse ranker (the iQIYI cascade model; docs/trainer.md).

    u = user_tower(embeddings of the user-side fields, their dense values)      (user id, user and request features)
    v = item_tower(embeddings of the item-side fields, their dense values)
    logit = sim(u, v) / temperature + bias                                       (cosine or dot; both learned)

The embedding rows start at zero and are trained by FTRL with L1 (``embedding_l1``): a row whose
accumulated gradient never outweighs the L1 term stays exactly zero, and the export leaves such rows
out (:class:`~trainer.layers.PrunedTable`) with no change in any score. The towers, the similarity's
temperature and bias are trained by Adam.

Cascade distillation: with a fine model named (``model.two_tower.distill_from``), the loss adds
``lambda_t * mean((logit - sg(teacher_logit))^2)``, lambda rising linearly from 0 to ``distill_weight``
over ``distill_ramp_steps`` steps; the teacher's logit is read back from its served probability
through this model's calibration (so a teacher and a student trained with the same loss compare raw
logits).

Besides ``serving_default`` the export has ``score_items``: one user (user-side fields, batch 1)
against N items (item-side fields, batch N), the user tower computed once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from common.errors import ConfigError
from trainer.features import FeatureLookup, FeatureSpec, signature_name
from trainer.layers import MLP, FieldEmbedding, PrunedTable, Similarity
from trainer.layers.multi_hash import combine_columns
from trainer.layers.pruned import unprune
from trainer.models.base import Endpoint, Served, ServingPart, TrainableModel, make_aux_heads, transform_dense

SCORE_ITEMS = "score_items"
PROBABILITY_FLOOR = 1e-6
TOWER_BIAS_INIT = 0.1  # a teacher's probability is clipped to [floor, 1 - floor] before its logit


def split_fields(
    spec: FeatureSpec, item_fields: Sequence[str], ignore_fields: Sequence[str]
) -> dict[str, list[int]]:
    """Indices (into ``spec.base_fields`` and ``spec.dense``) of the user-side and item-side fields."""

    def side(field: str) -> str:
        if any(fnmatch.fnmatchcase(field, p) for p in ignore_fields):
            return "ignore"
        return "item" if any(fnmatch.fnmatchcase(field, p) for p in item_fields) else "user"

    out: dict[str, list[int]] = {"user_base": [], "item_base": [], "user_dense": [], "item_dense": []}
    for kind, fields in (("base", spec.base_fields), ("dense", spec.dense)):
        for index, field in enumerate(fields):
            where = side(field)
            if where != "ignore":
                out[f"{where}_{kind}"].append(index)
    for where, setting in (("item", "model.two_tower.item_fields"), ("user", "every other field")):
        if not out[f"{where}_base"]:
            raise ConfigError(
                f"the two-tower model's {where} tower gets no categorical field ({setting}; fields "
                f"{spec.base_fields}, item_fields {list(item_fields)}, ignore_fields {list(ignore_fields)}): "
                "expected at least one on each side"
            )
    return out


def side_spec(spec: FeatureSpec, base: Sequence[int], dense: Sequence[int]) -> FeatureSpec:
    """The layout of one side's fields alone (no crosses): what its serving lookup produces."""
    return spec.select([spec.base_fields[i] for i in base] + [spec.dense[i] for i in dense])


def teacher_logit(probability: Any, calibration: str) -> Any:
    """The raw logit whose served probability (under ``calibration``) is ``probability``."""
    p = ops.clip(ops.cast(probability, "float32"), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    if calibration == "fnc":  # p = b / (1 - b): logit(b) = log(p)
        return ops.log(p)
    return ops.log(p) - ops.log1p(-p)


@keras.saving.register_keras_serializable(package="trainer")
class TwoTowerModel(TrainableModel):
    """Inputs as :class:`~trainer.models.wide_deep.WideDeepModel`'s (the crosses and ignored fields
    unused). Outputs ``logit``; ``l2`` when training; ``dp_logit`` / ``rn_logit`` with ``aux_heads``
    (read from both towers' vectors, stop-gradient)."""

    def __init__(
        self,
        spec: dict[str, Any],
        item_fields: Sequence[str] = ("item_id",),
        ignore_fields: Sequence[str] = ("position",),
        embedding_dim: int = 8,
        user_units: Sequence[int] = (64, 32),
        item_units: Sequence[int] = (64, 32),
        output_dim: int = 16,
        similarity: str = "dot",
        init_temperature: float = 0.2,
        embedding_l1: float = 0.01,
        distill_weight: float = 0.0,
        distill_ramp_steps: int = 1000,
        prune_export: bool = True,
        dropout: float = 0.0,
        bias_init: float = 0.0,
        aux_heads: bool = False,
        aux_bias_init: Sequence[float] = (-4.0, 4.0),
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.spec_json = spec
        self.spec = FeatureSpec.from_json(spec)
        self.item_fields = [str(p) for p in item_fields]
        self.ignore_fields = [str(p) for p in ignore_fields]
        self.embedding_dim = int(embedding_dim)
        self.user_units = [int(n) for n in user_units]
        self.item_units = [int(n) for n in item_units]
        self.output_dim = int(output_dim)
        self.similarity_kind = similarity
        self.init_temperature = float(init_temperature)
        self.embedding_l1 = float(embedding_l1)
        self.cascade_weight = float(distill_weight)  # 0: no fine model to distil from
        self.distill_ramp_steps = int(distill_ramp_steps)
        self.prune_export = bool(prune_export)
        self.dropout = float(dropout)
        self.bias_init = float(bias_init)
        self.aux_heads = bool(aux_heads)
        self.aux_bias_init = [float(x) for x in aux_bias_init]
        self.seed = int(seed)
        self.sides = split_fields(self.spec, self.item_fields, self.ignore_fields)
        offsets = self.spec.base_offsets
        self._offsets = {s: [offsets[i] for i in self.sides[f"{s}_base"]] for s in ("user", "item")}
        self._n_base = len(self.spec.base_fields)
        self._groups = {s: self.side_spec(s).column_groups for s in ("user", "item")}  # a side's fields' columns
        self.embedding = FieldEmbedding(
            self.spec.base_sizes, 0, embedding_dim, initializer="zeros", seed=seed + 2000, name="embedding"
        )
        # Open ReLUs at the start: the rows start at zero, and a tower without dense inputs would
        # otherwise never pass its rows a gradient.
        towers: dict[str, Any] = {
            "hidden_bias_init": TOWER_BIAS_INIT, "output_units": self.output_dim, "dropout": dropout
        }
        self.user_tower = MLP(self.user_units, seed=seed + 6000, name="user_tower", **towers)
        self.item_tower = MLP(self.item_units, seed=seed + 7000, name="item_tower", **towers)
        self.similarity = Similarity(similarity, init_temperature, bias_init, name="similarity")
        if self.aux_heads:
            self.dp_head, self.rn_head = make_aux_heads(seed, self.aux_bias_init)

    def _width(self, side: str) -> int:
        return len(self._groups[side]) * self.embedding_dim + len(self.sides[f"{side}_dense"])

    def build(self, input_shape: Any = None) -> None:
        self.embedding.build()
        self.user_tower.build((None, self._width("user")))
        self.item_tower.build((None, self._width("item")))
        self.similarity.build()
        if self.aux_heads:
            self.dp_head.build((None, 2 * self.output_dim))
            self.rn_head.build((None, 2 * self.output_dim))
        self.built = True

    # -- the towers --------------------------------------------------------------------------------

    def tower(self, side: str, table: Any, local_ids: Any, dense: Any, training: bool = False) -> Any:
        """One side's vectors ``[batch, output_dim]`` from its fields' local ids and transformed dense
        values; ``table``: the embedding layer, or the export's pruned table (same rows, same values)."""
        rows = ops.cast(local_ids, "int32") + ops.convert_to_tensor(self._offsets[side], "int32")
        embedded = combine_columns(table.lookup(rows), self._groups[side])
        x = ops.reshape(embedded, (-1, len(self._groups[side]) * self.embedding_dim))
        if self.sides[f"{side}_dense"]:
            x = ops.concatenate([x, dense], axis=1)
        tower = self.user_tower if side == "user" else self.item_tower
        return ops.reshape(tower(x, training=training)["output"], (-1, self.output_dim))

    def _towers(self, table: Any, inputs: dict[str, Any], training: bool) -> tuple[Any, Any]:
        ids = ops.cast(inputs["ids"], "int32")
        dense = transform_dense(ops.cast(inputs["dense"], "float32"))

        def columns(x: Any, index: list[int]) -> Any:
            return ops.take(x, ops.convert_to_tensor(index, "int32"), axis=1)

        vectors = []
        for side in ("user", "item"):
            dense_side = columns(dense, self.sides[f"{side}_dense"]) if self.sides[f"{side}_dense"] else None
            vectors.append(self.tower(side, table, columns(ids, self.sides[f"{side}_base"]), dense_side, training))
        return vectors[0], vectors[1]

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        u, v = self._towers(self.embedding, inputs, training)
        outputs = {"logit": self.similarity(u, v)}
        if self.aux_heads:
            both = ops.stop_gradient(ops.concatenate([u, v], axis=1))
            outputs["dp_logit"] = self.dp_head(both)[:, 0]
            outputs["rn_logit"] = self.rn_head(both)[:, 0]
        if training:
            ids = ops.cast(inputs["ids"], "int32")[:, : self._n_base]
            used = ops.take(ids, ops.convert_to_tensor(self.sides["user_base"] + self.sides["item_base"]), axis=1)
            offsets = self._offsets["user"] + self._offsets["item"]
            rows = self.embedding.lookup(used + ops.convert_to_tensor(offsets, "int32"))
            outputs["l2"] = ops.mean(ops.sum(ops.square(rows), axis=(1, 2)))
        return outputs

    # -- training ----------------------------------------------------------------------------------

    def compile_training(self, loss: Any, wide_optimizer: Any, deep_optimizer: Any, *args: Any, **kwargs: Any) -> None:
        # FTRL trains the embedding rows alone here, with this model's own L1 (sync_ftrl reads it too).
        wide_optimizer.l1_regularization_strength = self.embedding_l1
        super().compile_training(loss, wide_optimizer, deep_optimizer, *args, **kwargs)

    def distill_lambda(self) -> Any:
        """lambda at this step: rising linearly from 0 to ``distill_weight`` over the ramp."""
        if self.distill_ramp_steps <= 0:
            return ops.convert_to_tensor(self.cascade_weight, "float32")
        progress = ops.cast(self.deep_optimizer.iterations, "float32") / float(self.distill_ramp_steps)
        return self.cascade_weight * ops.minimum(progress, 1.0)

    def model_losses(self, targets: dict[str, Any], outputs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        if self.cascade_weight <= 0.0:
            return {}
        assert self.loss_fn is not None
        fine = ops.stop_gradient(teacher_logit(targets["teacher"], self.loss_fn.calibration))
        mse = ops.mean(ops.square(outputs["logit"] - fine))
        return {"cascade_loss": (mse, self.distill_lambda())}

    def ftrl_layers(self) -> list[Any]:
        return [self.embedding]

    def row_tables(self) -> list[tuple[Any, str]]:
        return self.embedding.row_tables()

    @property
    def bias_variable(self) -> Any:
        return self.similarity.bias

    # -- serving -----------------------------------------------------------------------------------

    def side_spec(self, side: str) -> FeatureSpec:
        """The layout of ``side``'s (user or item) fields: its part of ``score_items``'s inputs."""
        return side_spec(self.spec, self.sides[f"{side}_base"], self.sides[f"{side}_dense"])

    @property
    def pruned_name(self) -> str:
        return f"{self.name}_pruned_embeddings"

    def served(self, vocabs: Any) -> Served:
        table: Any = self.embedding
        meta: dict[str, Any] = {"rows": int(self.embedding.embeddings.shape[0])}
        if self.prune_export:
            table = PrunedTable.from_table(np.asarray(self.embedding.embeddings.numpy()), name=self.pruned_name)
            meta.update(
                pruned_rows=meta["rows"] - table.kept,
                table_bytes=meta["rows"] * self.embedding_dim * 4,
                pruned_table_bytes=table.nbytes(),
            )
        towers = [self.user_tower, self.item_tower, self.similarity]

        def logit(features: dict[str, Any]) -> Any:
            u, v = self._towers(table, features, training=False)
            return self.similarity(u, v)

        lookups = {
            side: FeatureLookup.from_vocabs(self.side_spec(side), vocabs, name=f"{side}_lookup")
            for side in ("user", "item")
        }
        score = ServingPart(logit, [table, *towers, *lookups.values()], name="two_tower")

        def endpoints(probability: Any) -> list[Endpoint]:
            signature = self.spec.signature()
            inputs: dict[str, tf.TensorSpec] = {}
            for side, shape in (("user", [1]), ("item", [None])):
                for field in self.side_spec(side).fields:
                    name = signature_name(field)
                    inputs[name] = tf.TensorSpec(shape, signature[name].dtype, name=name)

            def score_items(features: dict[str, Any]) -> dict[str, Any]:
                vectors = {}
                for side in ("user", "item"):
                    looked = lookups[side](features)
                    dense = transform_dense(ops.cast(looked["dense"], "float32"))
                    has_dense = bool(self.sides[f"{side}_dense"])
                    vectors[side] = self.tower(side, table, looked["ids"], dense if has_dense else None)
                return {"probability": probability(self.similarity(vectors["user"], vectors["item"]))}

            return [Endpoint(SCORE_ITEMS, score_items, [inputs])]

        return Served(logit=score, endpoints=endpoints, meta=meta)

    def exported_variables(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A pruned export's table made whole (its kept rows in place, the others zero)."""
        full = self.embedding.embeddings
        rows, values = saved.get(f"{self.pruned_name}/rows"), saved.get(f"{self.pruned_name}/values")
        if full.path in saved or rows is None or values is None:
            return saved
        table = unprune(np.asarray(rows.numpy()), np.asarray(values.numpy()), int(full.shape[0]))
        return {**saved, full.path: tf.constant(table)}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "spec": self.spec_json,
            "item_fields": self.item_fields,
            "ignore_fields": self.ignore_fields,
            "embedding_dim": self.embedding_dim,
            "user_units": self.user_units,
            "item_units": self.item_units,
            "output_dim": self.output_dim,
            "similarity": self.similarity_kind,
            "init_temperature": self.init_temperature,
            "embedding_l1": self.embedding_l1,
            "distill_weight": self.cascade_weight,
            "distill_ramp_steps": self.distill_ramp_steps,
            "prune_export": self.prune_export,
            "dropout": self.dropout,
            "bias_init": self.bias_init,
            "aux_heads": self.aux_heads,
            "aux_bias_init": self.aux_bias_init,
            "seed": self.seed,
        }
