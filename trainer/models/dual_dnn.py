"""Dual DNN with online knowledge distillation (the iQIYI teacher-student model; docs/trainer.md).

One embedding layer, two networks trained together on the fly:

    teacher = wide.linear + FM(wide factors) + FM(embeddings) + MLP(embeddings, dense)
              + cross(CrossNetwork(embeddings, dense))                     (the W&D + FM model, plus DCN-v2)
    student = MLP_small(embeddings, dense) [+ FM(embeddings)]              (served alone)

    loss = L(student) + teacher_weight L(teacher)
           + distill_weight CE(sg(sigmoid(teacher)), student)              (the teacher's predictions)
           + hint_weight MSE(P student_hidden, sg(teacher_hidden))         (classifier / hint transfer)

``L`` is the run's delayed-feedback loss. The student's gradients reach the shared embeddings through
its own label loss and its transfer terms; the teacher's through its loss. The export serves the
student alone (:meth:`DualDNNModel.served`); the checkpoint keeps both.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from trainer.features import FeatureSpec
from trainer.layers import MLP, CrossNetwork, FactorizationMachine, FieldEmbedding, WideLayer
from trainer.losses.base import cross_entropy
from trainer.models.base import Served, ServingPart, TrainableModel, make_aux_heads, transform_dense


@keras.saving.register_keras_serializable(package="trainer")
class DualDNNModel(TrainableModel):
    """Inputs as :class:`~trainer.models.wide_deep.WideDeepModel`'s. Outputs ``logit`` (the student's)
    and ``teacher_logit``; when training also ``l2`` and both hidden layers; ``dp_logit`` /
    ``rn_logit`` with ``aux_heads`` (read from the teacher's hidden layer, stop-gradient)."""

    def __init__(
        self,
        spec: dict[str, Any],
        embedding_dim: int = 8,
        wide_factor_dim: int = 4,
        hidden_units: tuple[int, ...] | list[int] = (64, 32),
        cross_layers: int = 2,
        student_hidden_units: tuple[int, ...] | list[int] = (32,),
        student_fm: bool = True,
        teacher_weight: float = 1.0,
        distill_weight: float = 0.5,
        hint_weight: float = 0.1,
        init_stddev: float = 0.01,
        dropout: float = 0.0,
        bias_init: float = 0.0,
        aux_heads: bool = False,
        aux_bias_init: tuple[float, float] | list[float] = (-4.0, 4.0),
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not hidden_units or not student_hidden_units:
            raise ValueError("the teacher and the student need at least one hidden layer each (hint transfer)")
        self.spec_json = spec
        self.spec = FeatureSpec.from_json(spec)
        self.embedding_dim = int(embedding_dim)
        self.wide_factor_dim = int(wide_factor_dim)
        self.hidden_units = [int(n) for n in hidden_units]
        self.cross_layers = int(cross_layers)
        self.student_hidden_units = [int(n) for n in student_hidden_units]
        self.student_fm = bool(student_fm)
        self.teacher_weight = float(teacher_weight)
        self.transfer_weight = float(distill_weight)  # (distill_weight is the base's --distill-from term)
        self.hint_weight = float(hint_weight)
        self.init_stddev = float(init_stddev)
        self.dropout = float(dropout)
        self.bias_init = float(bias_init)
        self.aux_heads = bool(aux_heads)
        self.aux_bias_init = [float(x) for x in aux_bias_init]
        self.seed = int(seed)
        self._n_base = len(self.spec.base_fields)
        num_dense = len(self.spec.dense)
        self.embedding = FieldEmbedding(
            self.spec.base_sizes,
            num_dense,
            embedding_dim,
            init_stddev,
            seed=seed + 2000,
            column_groups=self.spec.column_groups,
            name="embedding",
        )
        self.width = self.embedding.width + num_dense  # the MLPs' and the cross network's input
        self.deep_fm = FactorizationMachine(name="deep_fm")
        # the teacher
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
        self.wide_fm = FactorizationMachine(name="wide_fm")
        self.teacher_mlp = MLP(self.hidden_units, 1, dropout, seed=seed + 2000, name="teacher_mlp")
        self.cross = CrossNetwork(cross_layers, seed=seed + 4000, name="cross")
        self.cross_output = keras.layers.Dense(
            1,
            use_bias=False,  # the teacher's bias is the wide part's
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 4100),
            name="cross_output",
        )
        # the student, and the projection of its hidden layer onto the teacher's (training only)
        self.student = MLP(
            self.student_hidden_units, 1, dropout, output_bias_init=bias_init, seed=seed + 5000, name="student"
        )
        self.hint = keras.layers.Dense(
            self.hidden_units[-1], kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 5100), name="hint"
        )
        if self.aux_heads:
            self.dp_head, self.rn_head = make_aux_heads(seed, self.aux_bias_init)

    def build(self, input_shape: Any = None) -> None:
        self.embedding.build()
        self.wide.build()
        for layer in (self.teacher_mlp, self.cross, self.cross_output, self.student):
            layer.build((None, self.width))
        self.hint.build((None, self.student_hidden_units[-1]))
        if self.aux_heads:
            self.dp_head.build((None, self.hidden_units[-1]))
            self.rn_head.build((None, self.hidden_units[-1]))
        self.built = True

    def _split(self, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
        ids = ops.cast(inputs["ids"], "int32")
        return ids[:, : self._n_base], ids[:, self._n_base :], transform_dense(ops.cast(inputs["dense"], "float32"))

    def _student(self, fields: dict[str, Any], training: bool) -> dict[str, Any]:
        out = self.student(fields["flat"], training=training)
        logit = out["output"] + self.deep_fm(fields["vectors"]) if self.student_fm else out["output"]
        return {"logit": logit, "hidden": out["hidden"]}

    def student_logit(self, inputs: dict[str, Any]) -> Any:
        """The student's logit alone (inference): the served function, without the teacher."""
        base_ids, _, dense = self._split(inputs)
        return self._student(self.embedding(base_ids, dense), training=False)["logit"]

    def _teacher(self, base_ids: Any, cross_ids: Any, dense: Any, fields: dict[str, Any], training: bool) -> Any:
        wide = self.wide(base_ids, cross_ids, dense)
        mlp = self.teacher_mlp(fields["flat"], training=training)
        logit = (
            wide["linear"]
            + self.wide_fm(wide["factors"])
            + self.deep_fm(fields["vectors"])
            + mlp["output"]
            + self.cross_output(self.cross(fields["flat"]))[:, 0]
        )
        return {"logit": logit, "hidden": mlp["hidden"]}

    def teacher_logit(self, inputs: dict[str, Any]) -> Any:
        """The teacher's logit alone (inference; what the benchmark times against the student)."""
        base_ids, cross_ids, dense = self._split(inputs)
        return self._teacher(base_ids, cross_ids, dense, self.embedding(base_ids, dense), training=False)["logit"]

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        base_ids, cross_ids, dense = self._split(inputs)
        fields = self.embedding(base_ids, dense)
        student = self._student(fields, training)
        teacher = self._teacher(base_ids, cross_ids, dense, fields, training)
        outputs = {"logit": student["logit"], "teacher_logit": teacher["logit"]}
        if self.aux_heads:
            hidden = ops.stop_gradient(teacher["hidden"])
            outputs["dp_logit"] = self.dp_head(hidden)[:, 0]
            outputs["rn_logit"] = self.rn_head(hidden)[:, 0]
        if training:
            outputs["l2"] = fields["l2"]
            outputs["student_hidden"] = student["hidden"]
            outputs["teacher_hidden"] = teacher["hidden"]
        return outputs

    # -- training ----------------------------------------------------------------------------------

    def model_losses(self, targets: dict[str, Any], outputs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        assert self.loss_fn is not None
        teacher_outputs = {**outputs, "logit": outputs["teacher_logit"]}
        if self.aux_heads:  # the heads learn once, in the student's loss call
            teacher_outputs["dp_logit"] = ops.stop_gradient(outputs["dp_logit"])
            teacher_outputs["rn_logit"] = ops.stop_gradient(outputs["rn_logit"])
        teacher_loss = self.loss_fn(targets, teacher_outputs)["loss"]
        soft = ops.sigmoid(ops.stop_gradient(outputs["teacher_logit"]))
        transfer = ops.mean(cross_entropy(soft, outputs["logit"]))
        projected = self.hint(outputs["student_hidden"])
        hint = ops.mean(ops.square(projected - ops.stop_gradient(outputs["teacher_hidden"])))
        return {
            "teacher_loss": (teacher_loss, self.teacher_weight),
            "transfer_loss": (transfer, self.transfer_weight),
            "hint_loss": (hint, self.hint_weight),
        }

    def ftrl_layers(self) -> list[Any]:
        return [self.wide]

    def row_tables(self) -> list[tuple[Any, str]]:
        return self.wide.row_tables() + self.embedding.row_tables()

    @property
    def bias_variable(self) -> Any:
        return self.student.bias

    def served(self, vocabs: Any) -> Served:
        parts = [self.embedding, self.student, self.deep_fm]
        student = ServingPart(self.student_logit, parts, name="student")
        return Served(logit=student, meta={"served": "student"})

    def parameter_counts(self) -> dict[str, int]:
        """Weights of the shared embeddings, the teacher's own, the student's own (served), and the
        hint projection (training only)."""

        def count(*layers: Any) -> int:
            return sum(int(v.numpy().size) for layer in layers for v in layer.weights)

        heads = (self.dp_head, self.rn_head) if self.aux_heads else ()
        return {
            "embedding": count(self.embedding),
            "teacher": count(self.wide, self.teacher_mlp, self.cross, self.cross_output, *heads),
            "student": count(self.student),
            "hint": count(self.hint),
        }

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "spec": self.spec_json,
            "embedding_dim": self.embedding_dim,
            "wide_factor_dim": self.wide_factor_dim,
            "hidden_units": self.hidden_units,
            "cross_layers": self.cross_layers,
            "student_hidden_units": self.student_hidden_units,
            "student_fm": self.student_fm,
            "teacher_weight": self.teacher_weight,
            "distill_weight": self.transfer_weight,
            "hint_weight": self.hint_weight,
            "init_stddev": self.init_stddev,
            "dropout": self.dropout,
            "bias_init": self.bias_init,
            "aux_heads": self.aux_heads,
            "aux_bias_init": self.aux_bias_init,
            "seed": self.seed,
        }
