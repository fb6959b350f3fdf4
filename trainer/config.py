"""The trainer's one config model (YAML via ``--config``, env-expanded, strict and frozen).

`python -m trainer fit` builds it from its flags over an optional YAML file; the streaming sidecar
(`python -m trainer run --config`) reads its Kafka, checkpoint and registry parts from ``sidecar:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from common.config import StrictConfig, apply_overrides, load_config, validate_config
from common.defaults import ATTRIBUTION_HORIZON_MS
from trainer.losses import LOSS_NAMES as LOSS_NAMES  # re-exported for the CLI
from trainer.losses import LossName
from trainer.sidecar.config import SidecarConfig

# Fields of a sample (docs/wire-format.md) that carry features; maps are addressed as "context.KEY",
# "sparse.KEY" and "dense.KEY".
ID_FIELDS = ("user_id", "item_id")


class VocabConfig(StrictConfig):
    """Dynamic vocabulary of a tracked categorical field: admission and eviction (docs/trainer.md)."""

    admit_after: int = Field(default=2, ge=1)  # sightings before an ID gets its own slot (until then: OOV)
    evict_after_steps: int | None = Field(default=200_000, ge=1)  # idle this many train steps -> slot freed
    capacity: int | None = Field(default=None, ge=2)  # slots per field incl. OOV; None: sized from the data
    max_capacity: int = Field(default=1 << 20, ge=2)  # upper bound for the data-sized capacity


class FeaturesConfig(StrictConfig):
    """Which sample fields become which model inputs."""

    # Categorical fields hashed into buckets instead of tracked in a dynamic vocabulary.
    hashed: tuple[str, ...] = ("position",)
    hash_buckets: int = Field(default=64, ge=1)
    # Wide-part crosses of two categorical fields (hashed); a cross naming an absent field is skipped.
    crosses: tuple[tuple[str, str], ...] = (("user_id", "item_id"), ("item_id", "position"))
    cross_buckets: int = Field(default=1 << 16, ge=1)
    # Feature fields to use ("user_id", "context.page", "dense.u_ctr_7d", ...); None: all found in the data.
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    vocab: VocabConfig = VocabConfig()

    @field_validator("crosses")
    @classmethod
    def _distinct_cross_fields(cls, crosses: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for a, b in crosses:
            if a == b:
                raise ValueError(f"a cross needs two different fields, got ({a!r}, {b!r})")
        return crosses


ModelName = Literal["wide_deep", "dual_dnn", "two_tower"]


class DualDNNConfig(StrictConfig):
    """``model.name: dual_dnn``: the teacher is the Wide & Deep model of the model section
    (``embedding_dim``, ``wide_factor_dim``, ``hidden_units``) plus a DCN-v2 cross network; a lighter
    student shares its embeddings and alone is served (docs/trainer.md, Models)."""

    cross_layers: int = Field(default=2, ge=1)  # the teacher's cross network (its extra interaction)
    student_hidden_units: tuple[int, ...] = Field(default=(32,), min_length=1)
    student_fm: bool = True  # the student also takes the FM of the shared embeddings (no weights of its own)
    # The loss: student's delayed-feedback loss + teacher_weight x the teacher's + distill_weight x
    # CE(sg(teacher's probability), student) + hint_weight x MSE(projected student hidden, sg(teacher hidden)).
    teacher_weight: float = Field(default=1.0, ge=0.0)
    distill_weight: float = Field(default=1.0, ge=0.0)
    hint_weight: float = Field(default=0.1, ge=0.0)

    TRAINING: ClassVar[tuple[str, ...]] = ("teacher_weight", "distill_weight", "hint_weight")


class TwoTowerConfig(StrictConfig):
    """``model.name: two_tower``: the coarse ranker (docs/trainer.md, Models). Fields matching
    ``item_fields`` (glob patterns) feed the item tower, those matching ``ignore_fields`` neither
    tower, every other one (user id, user and request features) the user tower."""

    item_fields: tuple[str, ...] = (
        "item_id", "context.item_*", "sparse.item_*", "sparse.i_*", "dense.item_*", "dense.i_*"
    )
    ignore_fields: tuple[str, ...] = ("position",)  # a slot is not known when the coarse ranker scores
    user_units: tuple[int, ...] = (64, 32)  # hidden layers of each tower (the article: three, 512 wide)
    item_units: tuple[int, ...] = (64, 32)
    output_dim: int = Field(default=16, ge=1)  # the towers' vectors
    # logit = similarity / temperature + bias, both learned; dot: +0.007 AUC over cosine on the
    # generator's data (docs/trainer.md, Models)
    similarity: Literal["cosine", "dot"] = "dot"
    init_temperature: float = Field(default=0.2, gt=0.0)
    # FTRL (optimizer.ftrl_learning_rate) trains the embedding rows with this L1 instead of
    # optimizer.ftrl_l1; rows it holds at exactly zero are left out of the export, which scores exactly
    # as the full model. The L1 acts on batch-mean gradients: a larger fit.batch_size wants a smaller one.
    embedding_l1: float = Field(default=0.01, ge=0.0)
    prune_export: bool = True
    # Cascade distillation from the fine model: an export (or base directory of versions) of a Wide &
    # Deep or dual DNN model; loss + lambda x MSE(logit, the fine model's logit), lambda rising
    # linearly from 0 to distill_weight over distill_ramp_steps steps.
    distill_from: Path | None = None
    distill_weight: float = Field(default=1.0, ge=0.0)
    distill_ramp_steps: int = Field(default=1000, ge=0)

    TRAINING: ClassVar[tuple[str, ...]] = (
        "embedding_l1", "prune_export", "distill_from", "distill_weight", "distill_ramp_steps"
    )


class ModelConfig(StrictConfig):
    """The model (``name``) and its settings; ``wide_deep``: Wide & Deep with an FM layer on each part
    (the iQIYI variant), whose settings below the dual DNN's teacher shares."""

    name: ModelName = "wide_deep"
    embedding_dim: int = Field(default=8, ge=1)  # deep embeddings (and the deep FM's factors)
    wide_factor_dim: int = Field(default=4, ge=1)  # factors of the wide part's FM
    hidden_units: tuple[int, ...] = (64, 32)
    embedding_l2: float = Field(default=1e-5, ge=0.0)  # on the embedding rows used by a batch
    init_stddev: float = Field(default=0.01, gt=0.0)  # embeddings and FM factors
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # after each hidden layer, when training
    dual_dnn: DualDNNConfig = DualDNNConfig()
    two_tower: TwoTowerConfig = TwoTowerConfig()

    @property
    def cascade_teacher(self) -> Path | None:
        """The fine model a two-tower model distils from, if any."""
        return self.two_tower.distill_from if self.name == "two_tower" else None

    def with_training_settings_of(self, run: ModelConfig) -> ModelConfig:
        """This (saved) architecture with ``run``'s settings that only steer training (a warm start
        keeps the architecture, not the loss weights or the teacher)."""
        return self.model_copy(
            update={
                "dual_dnn": self.dual_dnn.model_copy(
                    update={k: getattr(run.dual_dnn, k) for k in DualDNNConfig.TRAINING}
                ),
                "two_tower": self.two_tower.model_copy(
                    update={k: getattr(run.two_tower, k) for k in TwoTowerConfig.TRAINING}
                ),
            }
        )


class OptimizerConfig(StrictConfig):
    """FTRL on the wide variables, Adam on the deep ones (both applied in one train step)."""

    # 0.05: one pass in stream order keeps the wide part's level steadier than at 0.2 (online PU bias
    # 0.89-0.93 -> 0.95-0.96 on the benchmark's streams; offline PU still closes 96% of its gap).
    ftrl_learning_rate: float = Field(default=0.05, gt=0.0)
    ftrl_l1: float = Field(default=0.0, ge=0.0)
    ftrl_l2: float = Field(default=0.01, ge=0.0)
    ftrl_initial_accumulator: float = Field(default=0.1, ge=0.0)
    adam_learning_rate: float = Field(default=0.001, gt=0.0)
    adam_weight_decay: float = Field(default=0.0, ge=0.0)  # decoupled (AdamW) when > 0
    # Exponential moving average of the deep weights (Polyak averaging); what fit exports. None: off.
    # Swapped in at the end of a shuffled fit only (after one pass it lags the model: -0.01 AUC).
    adam_ema_momentum: float | None = Field(default=0.99, gt=0.0, lt=1.0)


class LossConfig(StrictConfig):
    """Delayed-feedback correction (docs/trainer.md) and distillation."""

    name: LossName = "pu"
    # pu: a LATE_POSITIVE's "undo" term -log(1 - f) is taken at min(logit, bound), so the term is
    # bounded below by -softplus(bound); and nnPU non-negativity: when a batch's negative risk falls
    # below -nnpu_beta, the step ascends it (weight nnpu_gamma) instead of descending further.
    pu_logit_bound: float = Field(default=4.0, gt=0.0)
    pu_nnpu: bool = True
    pu_nnpu_beta: float = Field(default=0.0, ge=0.0)
    pu_nnpu_gamma: float = Field(default=1.0, ge=0.0)
    # pu, stream training (the sidecar, fit --order stream): a LATE_POSITIVE emitted at stream age A
    # (its emit time minus the stream start) is weighted 1 / F(A), F the share of late clicks with a
    # delay up to A (the delay model of trainer/delay_model.py: a shuffled fit's matured history, the
    # stream's own censored delays), capped at pending_max_weight; standing in for the clicks still to
    # come. False: plain PU.
    pending_clicks: bool = True
    # The join's H for this task (the same default; checked against the join's at the sidecar's start).
    attribution_horizon_ms: int = Field(default=ATTRIBUTION_HORIZON_MS, gt=0)
    pending_max_weight: float = Field(default=4.0, ge=1.0)
    # Delays a young stream cannot have shown yet, without history covering them: gamma (a censored
    # fit of log rate = a + b log d - d / tau), log-flat (the last observed log-density continued), or
    # blend, the mean of the two (the smallest error over the shapes of trainer/delay_model.py's doc).
    delay_tail: Literal["blend", "gamma", "log-flat"] = "blend"
    # Also learn the delays from the stream (censored, pooled with the history); False: history only.
    delay_learn_from_stream: bool = True
    fnc_max_probability: float = Field(default=0.999, gt=0.0, lt=1.0)  # clip of b / (1 - b)
    esdfm_aux_weight: float = Field(default=1.0, ge=0.0)  # weight of the f_dp and f_rn heads' losses
    distill_weight: float = Field(default=0.0, ge=0.0)  # lambda of the distillation term


class FitConfig(StrictConfig):
    """Offline fit over files of samples."""

    epochs: int = Field(default=2, ge=1)
    # shuffle: impressions per step, in a seeded random order of impressions that does not depend on
    # the files' order (a NEGATIVE and its LATE_POSITIVE share a step); stream: samples per step, in
    # the files' order, and nothing at the end (no EMA swap, no bias refit): with --epochs 1 over a
    # file in emission order, exactly the steps the streaming sidecar takes.
    batch_size: int = Field(default=256, ge=1)
    order: Literal["shuffle", "stream"] = "shuffle"
    seed: int = 0
    # Adam's learning rate over the fit: constant, or cosine decay to lr_floor x the initial rate.
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_floor: float = Field(default=0.1, ge=0.0, le=1.0)
    # Shuffled order only: after the last epoch, re-solve the global bias on all the samples (full
    # batch, the loss's own estimating equation, every other weight frozen): removes SGD noise from the
    # overall level. (A stream never ends, so the online correction must not depend on it.)
    refit_bias: bool = True
    progress_every_s: float = Field(default=10.0, gt=0.0)


class TrainerConfig(StrictConfig):
    """The whole trainer configuration: model and loss, offline fit, and the streaming sidecar."""

    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    loss: LossConfig = LossConfig()
    fit: FitConfig = FitConfig()
    sidecar: SidecarConfig = Field(default_factory=SidecarConfig)  # its addresses read from the env at load

    @model_validator(mode="after")
    def _check(self) -> TrainerConfig:
        if not self.model.hidden_units:
            raise ValueError("model.hidden_units needs at least one layer")
        if self.model.cascade_teacher is not None and (
            self.loss.distill_weight > 0.0 or self.sidecar.distill_from is not None
        ):
            raise ValueError(
                f"model.two_tower.distill_from ({self.model.cascade_teacher}) and --distill-from "
                f"(loss.distill_weight {self.loss.distill_weight:g}, sidecar.distill_from "
                f"{self.sidecar.distill_from}) both set: expected one teacher"
            )
        return self

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainerConfig:
        """Load from YAML (or defaults when ``path`` is None), with dotted-key overrides from flags."""
        if path is None:
            return validate_config(apply_overrides({}, overrides or {}), cls)
        return load_config(path, cls, overrides)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerConfig:
        return validate_config(data, cls, source="saved trainer config")
