"""The trainer's one config model (YAML via ``--config``, env-expanded, strict and frozen).

`python -m trainer fit` builds it from its flags over an optional YAML file; the streaming sidecar
(`python -m trainer run --config`) reads its Kafka, checkpoint and registry parts from ``sidecar:``.

Its Kafka and Redis sections (``sidecar.kafka``, ``sidecar.redis``) derive from the connection model
the join's config shares (common.connection): secrets (SASL and TLS key passwords, the Redis password)
are :class:`pydantic.SecretStr`, printed as ``**********`` in logs, reprs and the config saved beside
checkpoints and exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from common.config import DurationMs, StrictConfig, apply_overrides, load_config, validate_config
from common.connection import KafkaConnection, RedisConnection
from common.defaults import ATTRIBUTION_HORIZON_MS, DEDUP_HORIZON_MS
from common.services import START_WAIT_S
from common.topics import DEADLETTER_TOPIC, samples_topic
from trainer.losses.params import LOSS_NAMES as LOSS_NAMES  # re-exported for the CLI
from trainer.losses.params import LossName, LossParams
from trainer.samples import CATEGORICAL_FIELDS

# Fields of a sample (docs/wire-format.md) that carry features; maps are addressed as "context.KEY",
# "sparse.KEY" and "dense.KEY".
ID_FIELDS = ("user_id", "item_id")


def is_categorical_field(name: str) -> bool:
    """Whether ``name`` has the form of a categorical feature field (one with embeddings)."""
    group, dot, key = name.partition(".")
    return name in CATEGORICAL_FIELDS or (bool(dot) and bool(key) and group in ("context", "sparse"))


class VocabConfig(StrictConfig):
    """Dynamic vocabulary of a tracked categorical field: admission and eviction (docs/trainer.md)."""

    admit_after: int = Field(default=2, ge=1)  # sightings before an ID gets its own slot (until then: OOV)
    evict_after_steps: int | None = Field(default=200_000, ge=1)  # idle this many train steps -> slot freed
    capacity: int | None = Field(default=None, ge=2)  # slots per field incl. OOV; None: sized from the data
    max_capacity: int = Field(default=1 << 20, ge=2)  # upper bound for the data-sized capacity
    # Growable, bounded memory (trainer/growth.py): the tracked fields' slots together (their model rows
    # with optimizer slots and the train step's working set, the vocabularies' own bytes) stay within this
    # many MB. A full field with nothing idle doubles while they fit, then evicts its least recently seen
    # IDs. With a budget a field starts at `capacity`, default GROWABLE_START, not sized from the data.
    # None: fixed capacities.
    memory_budget_mb: float | None = Field(default=None, gt=0)

    GROWABLE_START: ClassVar[int] = 1024

    @model_validator(mode="before")
    @classmethod
    def _growable_start(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("memory_budget_mb") is not None and data.get("capacity") is None:
            return {**data, "capacity": cls.GROWABLE_START}
        return data


class MultiHashConfig(StrictConfig):
    """A field hashed into K sub-tables (``tables``: the rows of each; K = how many) by K independent
    keyed hashes; its vector is the sum of its K rows, or the K rows side by side (``concat``: K x
    model.embedding_dim wide). An ID collides only with one sharing all K of its buckets
    (docs/trainer.md, Multi-hash embeddings)."""

    tables: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=2, max_length=8)
    combine: Literal["sum", "concat"] = "sum"
    seed: int = Field(default=0, ge=0)  # picks the K hash keys (part of the model's layout)


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
    # Categorical fields hashed into K sub-tables each, by field: {tables: [rows, ...], combine: sum|concat}.
    # A field is tracked (a dynamic vocabulary), hashed or multi-hash: one of the three.
    multi_hash: dict[str, MultiHashConfig] = Field(default_factory=dict)
    # Categorical fields whose embeddings (and wide weights, vocabulary, and the crosses of frozen fields
    # only) keep their warm-start values while the rest trains (docs/trainer.md, Frozen features). A
    # training setting: a warm start keeps the run's list, not the saved model's.
    frozen: tuple[str, ...] = ()

    @field_validator("frozen")
    @classmethod
    def _categorical_fields(cls, frozen: tuple[str, ...]) -> tuple[str, ...]:
        for name in frozen:
            if not is_categorical_field(name):
                raise ValueError(
                    f"cannot freeze {name!r}: expected a categorical field (user_id, item_id, position, "
                    "context.KEY or sparse.KEY)"
                )
        return frozen

    @field_validator("multi_hash")
    @classmethod
    def _multi_hash_categorical(cls, multi_hash: dict[str, MultiHashConfig]) -> dict[str, MultiHashConfig]:
        for name in multi_hash:
            if not is_categorical_field(name):
                raise ValueError(
                    f"cannot hash {name!r} into sub-tables: expected a categorical field (user_id, item_id, "
                    "position, context.KEY or sparse.KEY)"
                )
        return multi_hash

    @model_validator(mode="after")
    def _one_kind_per_field(self) -> FeaturesConfig:
        for name in self.multi_hash:
            if name in self.hashed:
                raise ValueError(
                    f"{name!r} is both in features.hashed and in features.multi_hash: expected one of them"
                )
        return self

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
    # Where that extra weight (1 / F - 1 per live LATE_POSITIVE) goes: on the late positives themselves
    # ("late"), or spread over the batch's NEGATIVEs in proportion to the model's click probability
    # ("negatives": the impressions still waiting for their clicks, ranked by a model that knows them);
    # auto: negatives when the delay model holds matured history (the day-level hot start), late in a
    # cold stream (a young model's probabilities are no guide yet). trainer/BENCHMARK.md measures both.
    pending_on: Literal["auto", "late", "negatives"] = "auto"
    # Delays a young stream cannot have shown yet, without history covering them: gamma (a censored
    # fit of log rate = a + b log d - d / tau), log-flat (the last observed log-density continued), or
    # blend, the mean of the two (the smallest error over the shapes of trainer/delay_model.py's doc).
    delay_tail: Literal["blend", "gamma", "log-flat"] = "blend"
    # Also learn the delays from the stream (censored, pooled with the history); False: history only.
    delay_learn_from_stream: bool = True
    fnc_max_probability: float = Field(default=0.999, gt=0.0, lt=1.0)  # clip of b / (1 - b)
    esdfm_aux_weight: float = Field(default=1.0, ge=0.0)  # esdfm, defer: weight of the auxiliary heads' losses
    distill_weight: float = Field(default=0.0, ge=0.0)  # lambda of the distillation term

    def params(self) -> LossParams:
        """What the loss classes take (they do not read this config)."""
        return LossParams(
            pu_logit_bound=self.pu_logit_bound,
            pu_nnpu=self.pu_nnpu,
            pu_nnpu_beta=self.pu_nnpu_beta,
            pu_nnpu_gamma=self.pu_nnpu_gamma,
            esdfm_aux_weight=self.esdfm_aux_weight,
        )


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


# -- the streaming sidecar (`trainer run`, ``sidecar:``) ----------------------------------------------


# The sidecar's spelling of the security settings before it shared the join's ``security`` section; the
# shipped trainer configs (infra/trainer.yaml, infra/k8s) still use it, so it is read into ``security``.
FLAT_SECURITY_KEYS = {"security_protocol": "protocol", "sasl_mechanism": "sasl_mechanism",
                      "sasl_username": "sasl_username", "sasl_password": "sasl_password"}


class KafkaConfig(KafkaConnection):
    """The sidecar's ``kafka`` section: the connection keys the join's has too (brokers, client id,
    ``security``, ``wire``, ``consumer`` / ``producer`` settings: common.connection), its consumer group
    and the dead-letter topic. ``security_protocol`` and ``sasl_*`` beside them are read as ``security``."""

    group_id: str = Field(default="trainer.click", min_length=1)
    deadletter_topic: str = Field(default=DEADLETTER_TOPIC, min_length=1)
    pinned_consumer: ClassVar[Mapping[str, tuple[Any, str]]] = {
        "enable.auto.commit": (False, "the sidecar commits offsets with its checkpoints, so a sample is trained once"),
        "enable.auto.offset.store": (False, "the sidecar stores an offset once its sample is trained"),
        "enable.partition.eof": (True, "sidecar.order and --exit-when-idle tell a caught-up partition by it"),
    }

    @model_validator(mode="before")
    @classmethod
    def _flat_security(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        flat = sorted(k for k in data if k in FLAT_SECURITY_KEYS)
        if not flat:
            return data
        if data.get("security") is not None:
            raise ValueError(f"{', '.join(flat)} and security are both set: write the settings under security only")
        rest = {k: v for k, v in data.items() if k not in FLAT_SECURITY_KEYS}
        return {**rest, "security": {FLAT_SECURITY_KEYS[k]: data[k] for k in flat if data[k] is not None}}


class RedisConfig(RedisConnection):
    """The sidecar's ``redis`` section (the registry's Redis): the connection keys the join's has too
    (url, username, password, tls: common.connection) and the prefix of the trainer's keys."""

    key_prefix: str = "odl:trainer"


class BatchConfig(StrictConfig):
    """A mini-batch closes when it holds ``size`` samples or its first sample waited ``max_wait``."""

    size: int = Field(default=256, ge=1)
    max_wait: DurationMs = 1_000


class OrderConfig(StrictConfig):
    """Samples from several partitions trained in emit-time order (``trainer/sidecar/ordering.py``): a
    partition that has nothing held and is not caught up holds the others back at most ``max_wait``;
    at most ``max_buffered`` messages are held. ``by_emit_time: false``: in the order consumed."""

    by_emit_time: bool = True
    max_wait: DurationMs = 2_000
    max_buffered: int = Field(default=50_000, ge=1)


class CheckpointConfig(StrictConfig):
    """A checkpoint every ``every_steps`` train steps or ``every`` (whichever comes first)."""

    every_steps: int = Field(default=500, ge=1)
    every: DurationMs = 30_000
    keep: int = Field(default=3, ge=2)


class DedupConfig(StrictConfig):
    """``sample_id``s remembered for ``horizon`` of event time, at most ``max_entries`` (the oldest are
    forgotten first beyond that). The horizon must be at least the join's attribution horizon; the
    default doubles the join's default (24 h), a margin for partitions whose event time lags the
    others (the dedup's clock is the largest emit time seen on any partition)."""

    horizon: DurationMs = DEDUP_HORIZON_MS
    max_entries: int = Field(default=2_000_000, ge=1)


class Floors(StrictConfig):
    """Absolute limits on a version's own metrics on matured impressions. A floor is broken only when
    the whole interval at the confidence lies past it (an AUC of 0.54 +- 0.03 does not break 0.55)."""

    # No better than chance. A young model on a weak signal sits near 0.55 while healthy; the data
    # checks, not this floor, catch a stream whose labels stopped following its features.
    min_auc: float | None = Field(default=0.5, ge=0.0, le=1.0)
    max_logloss: float | None = Field(default=None, gt=0.0)
    # Off by default: on labels matured for ``gate.maturity`` the clicks still to come are missing, so a
    # calibrated model's bias is above 1 by the share of them (1.6 when 40 % come later); the paired
    # ``max_bias_shift`` needs no labels.
    min_prediction_bias: float | None = Field(default=None, ge=0.0)
    max_prediction_bias: float | None = Field(default=None, gt=0.0)


class Thresholds(Floors):
    """The floors, and margins against the reference (the versions that were current when the same
    impressions arrived), each tested one-sided: a candidate is refused when it is significantly worse
    than the reference by more than the margin, never because a point estimate moved by chance."""

    max_auc_drop: float | None = Field(default=0.01, ge=0.0)  # reference AUC - candidate AUC (DeLong, paired)
    # A healthy model in training moves its level by +-20 % between versions, and its progressive log
    # loss against the reference's by -11 % .. +11 % (a cold start read from a backlog partition by
    # partition): the margins below are for a broken model, not for that.
    max_logloss_increase: float | None = Field(default=0.1, ge=0.0)  # relative, on the paired per-impression mean
    max_bias_shift: float | None = Field(default=0.5, gt=0.0)  # mean prediction / reference's, either way


class DataChecks(StrictConfig):
    """The stream's statistics over the samples a candidate trained on since the current version,
    against those recorded for the current version; a difference beyond the tolerance, significant at
    ``confidence``, marks the data bad (the candidate is refused; a current version trained on it is
    rolled back). Blocks of ``block`` samples in arrival order (see trainer/sidecar/data_checks.py)."""

    enabled: bool = True
    block: int = Field(default=2_000, ge=50)
    reference_blocks: int = Field(default=10, ge=1)  # blocks before a version's export: its reference
    history_blocks: int = Field(default=1_000, ge=10)  # blocks remembered (the span checked at most)
    confidence: float = Field(default=0.999, gt=0.5, lt=1.0)
    click_rate_change: float | None = Field(default=0.2, gt=0.0)  # relative; healthy streams measured within 0.1
    # LATE_POSITIVE share below this x the reference's: a join that drops them sends it to 0, while a cold
    # stream's share climbs for hours (a backlog read partition by partition mixes those hours)
    late_share_ratio: float | None = Field(default=0.1, gt=0.0, lt=1.0)
    missing_rate_change: float | None = Field(default=0.1, gt=0.0, le=1.0)  # absolute, per feature
    distinct_share_ratio: float | None = Field(default=2.0, gt=1.0)  # per feature, either way
    top_share_change: float | None = Field(default=0.2, gt=0.0, le=1.0)  # absolute, per feature
    auc_drop: float | None = Field(default=0.05, gt=0.0)  # the early labels' AUC of the progressive scores


class GateConfig(StrictConfig):
    """Validation before publishing, on matured impressions: each impression's label once it is at least
    ``maturity`` old in stream time (a NEGATIVE later corrected by its LATE_POSITIVE counts once, as
    clicked), scored when its first sample arrived by the training model (before training on it) and by
    the version then current; not those that came while the model had trained fewer than ``warmup``
    samples (a model learning from scratch says nothing of the versions it becomes). The last
    ``evidence`` of them judge a candidate; with fewer than ``min_samples`` the tests are not run
    (nothing speaks against the candidate; the data checks still apply). ``capacity`` impressions are
    remembered (``sample_share`` of them, chosen by impression_id hash, when the traffic over
    ``maturity`` exceeds it)."""

    maturity: DurationMs = 30 * 60_000
    warmup: int = Field(default=20_000, ge=0)  # samples trained before evidence counts
    evidence: int = Field(default=20_000, ge=10)
    min_samples: int = Field(default=1_000, ge=10)
    capacity: int = Field(default=100_000, ge=100)
    sample_share: float = Field(default=1.0, gt=0.0, le=1.0)
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0)
    thresholds: Thresholds = Thresholds()
    data: DataChecks = DataChecks()

    @model_validator(mode="after")
    def _sizes(self) -> GateConfig:
        if not self.min_samples <= self.evidence <= self.capacity:
            raise ValueError(
                f"need gate.min_samples <= gate.evidence <= gate.capacity, got {self.min_samples}, "
                f"{self.evidence}, {self.capacity}"
            )
        return self


class RollbackConfig(StrictConfig):
    """Automatic rollback of the current version on a breach that persists for ``consecutive``
    evaluation windows: its floors broken on ``window`` matured impressions it scored, or the data
    checks failing on samples it was trained on (then the pointer goes to the newest published version
    trained before the bad data). At most once per published version."""

    enabled: bool = True
    window: int = Field(default=2_000, ge=10)
    consecutive: int = Field(default=2, ge=1)
    floors: Floors = Floors()


class DeltaConfig(StrictConfig):
    """Delta exports (trainer/delta.py, docs/serving.md): between full exports, a version is written as
    the changes since the previous one too (its delta, what a serving site receives), beside its full
    SavedModel. Off by default: a version is then a full export only, as before deltas existed. On,
    ``full_every`` deltas follow each full export (a chain of at most that many links: what a serving
    site applies to catch up, and what a lost link costs before the next full export heals it)."""

    enabled: bool = False
    full_every: int = Field(default=10, ge=1)


class SidecarConfig(StrictConfig):
    """Everything `trainer run` adds to the model/loss config: input, checkpoints, versions, registry."""

    task: str = "click"
    # built at load time: an address from the environment is read then, not at import
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    model_dir: Path = Path("model")
    batch: BatchConfig = BatchConfig()
    order: OrderConfig = OrderConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    dedup: DedupConfig = DedupConfig()
    export_interval: DurationMs = 60_000
    keep_versions: int = Field(default=5, ge=2)
    delta: DeltaConfig = DeltaConfig()
    gate: GateConfig = GateConfig()
    rollback: RollbackConfig = RollbackConfig()
    # Slots per tracked field when features.vocab.capacity is unset (the stream's size is unknown).
    vocab_capacity: int = Field(default=1 << 16, ge=16)
    warm_start: Path | None = None  # an offline export or checkpoint directory to start from
    watch_dir: Path | None = None  # re-initialise from a newer export appearing here
    watch_every: DurationMs = 60_000
    distill_from: Path | None = None  # an export whose predictions are the distillation teacher
    metrics_port: int | None = Field(default=9109, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 inside a container whose port is published
    tensorboard: bool = True  # summaries under <model_dir>/tensorboard
    summary_every_steps: int = Field(default=10, ge=1)  # progressive metrics and summaries this often
    exit_when_idle: DurationMs | None = None  # bounded mode: stop once drained and idle this long
    retry_for: DurationMs = 120_000  # Kafka/Redis unreachable longer than this: give up with an error
    # At start, Kafka and Redis unreachable this long (a progress line every 5 s): one error line, exit 1.
    start_wait: DurationMs = int(START_WAIT_S * 1000)

    @property
    def topic(self) -> str:
        return samples_topic(self.task)

    @property
    def checkpoint_dir(self) -> Path:
        return self.model_dir / "checkpoints"

    @model_validator(mode="after")
    def _check(self) -> SidecarConfig:
        if self.export_interval < 1_000:
            raise ValueError(f"export_interval must be at least 1s, got {self.export_interval} ms")
        return self


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
        """A config saved beside a checkpoint or an export. Its ``sidecar.kafka`` / ``sidecar.redis`` (where
        the run that wrote it found its services, in that trainer's keys, secrets masked) are not read
        back: nothing restored from a saved state uses them, and their keys have changed before."""
        saved = data.get("sidecar")
        if isinstance(saved, dict):
            data = {**data, "sidecar": {k: v for k, v in saved.items() if k not in ("kafka", "redis")}}
        return validate_config(data, cls, source="saved trainer config")
