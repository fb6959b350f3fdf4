"""The sidecar's run loop: consume -> dedup -> batch -> score+train (one pass) -> checkpoint -> export.

Order of effects, which is what makes restarts exact: a batch is trained, then (every N steps or
seconds, always with no sample consumed-but-untrained) the checkpoint records the state, the dedup
set and the offsets of every message before it, then the offsets are committed to Kafka. A version
is exported right after a checkpoint, so no version holds a sample its checkpoint does not.
SIGTERM/SIGINT set a flag: the loop trains what it holds, checkpoints, commits and closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from common.services import wait_until_reachable
from trainer.config import TrainerConfig
from trainer.fit import targets as fit_targets
from trainer.layers.calibration import calibrated
from trainer.samples import Sample, SampleTable
from trainer.sidecar.batching import Batch, Batcher
from trainer.sidecar.checkpoint import CheckpointStore, Position
from trainer.sidecar.consume import Decoded, Prefetcher, SampleSource
from trainer.sidecar.dedup import Dedup
from trainer.sidecar.errors import Unavailable, UsageError
from trainer.sidecar.join_contract import check_join_contract
from trainer.sidecar.metrics import SidecarMetrics, Summaries
from trainer.sidecar.ordering import EmitTimeOrder
from trainer.sidecar.publishing import Publisher
from trainer.sidecar.registry import Registry, write_registry_file
from trainer.sidecar.versions import VersionStore

if TYPE_CHECKING:
    from trainer.export import ExportedModel
    from trainer.state import TrainerState

log = logging.getLogger("trainer.sidecar")

POLL_S = 0.1
HOUSEKEEPING_S = 5.0  # lag gauges, the registry's pointer, the watched directory
KAFKA_PROBE_S = 3.0  # one metadata request of the start-up wait for Kafka


@dataclass
class RunSummary:
    samples_trained: int = 0
    steps: int = 0
    dedup_drops: int = 0
    deadletters: int = 0
    versions: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = "signal"
    # Throughput once running: from the end of the first batch (which traces the train step) to the
    # end of the last, and the samples trained in that span.
    first_trained_at: float | None = None
    last_trained_at: float | None = None
    span_samples: int = 0

    @property
    def samples_per_s(self) -> float | None:
        if self.first_trained_at is None or self.last_trained_at is None or self.span_samples == 0:
            return None
        return self.span_samples / (self.last_trained_at - self.first_trained_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "samples_trained": self.samples_trained,
            "steps": self.steps,
            "dedup_drops": self.dedup_drops,
            "deadletters": self.deadletters,
            "versions": [{k: r[k] for k in ("version", "status", "samples_trained")} for r in self.versions],
            "stopped_by": self.stopped_by,
            "samples_per_s": None if self.samples_per_s is None else round(self.samples_per_s, 1),
        }


def sidecar_config(config: TrainerConfig) -> TrainerConfig:
    """The config the stream trains with: vocabularies sized up front (the stream's size is unknown),
    and the mini-batch size as the train step's full batch (a batch closed early by ``max_wait``
    takes a proportionally shorter step, as the last short batch of a fit does)."""
    sc = config.sidecar
    fit = config.fit.model_copy(update={"batch_size": sc.batch.size})
    vocab = config.features.vocab
    if vocab.capacity is None:
        vocab = vocab.model_copy(update={"capacity": sc.vocab_capacity})
    features = config.features.model_copy(update={"vocab": vocab})
    return config.model_copy(update={"features": features, "fit": fit})


class Sidecar:
    def __init__(self, config: TrainerConfig, clock: Callable[[], float] = time.monotonic):
        if config.loss.name == "defer":
            raise UsageError(
                "loss 'defer' trains on a second ingestion of every impression at the attribution horizon, "
                "which the join does not emit and the sidecar does not replay: use it with `fit`, or another loss"
            )
        self.config = sidecar_config(config)
        self.sc = self.config.sidecar
        self.clock = clock
        self._stop = threading.Event()
        self.metrics = SidecarMetrics(self.sc.task)
        self.summary = RunSummary()
        self.state: TrainerState | None = None
        self.teacher: ExportedModel | None = None
        self._warm_version: int | None = None
        self._last_report: tuple[float, int] | None = None  # (clock, samples trained) at the last report
        self._prefetch: Prefetcher | None = None
        order = self.sc.order
        self._order: EmitTimeOrder[Decoded] | None = (
            EmitTimeOrder(order.max_wait / 1000.0, order.max_buffered) if order.by_emit_time else None
        )

    def request_stop(self) -> None:
        """Finish the step, checkpoint, commit, close (safe from a signal handler)."""
        self._stop.set()

    # -- set-up ------------------------------------------------------------------------------------

    def open(self) -> None:
        """Reach Redis and Kafka (a bounded, visible wait), restore the registry from disk (deleting
        nothing), then the checkpoint."""
        sc = self.sc
        sc.model_dir.mkdir(parents=True, exist_ok=True)
        prefix = f"{sc.redis.key_prefix}:{sc.task}"
        write_registry_file(sc.model_dir, prefix)
        self.store = VersionStore(sc.model_dir, sc.keep_versions)
        leftovers = self.store.remove_temporary()
        if leftovers:
            log.info("removed what interrupted writes left", extra={"paths": leftovers})
        self.registry = Registry(sc.redis, prefix, self.store, retry_for_s=sc.retry_for / 1000.0)
        wait_s = sc.start_wait / 1000.0
        self.registry.connect(wait_s)
        check_join_contract(self.config, self.registry.client, log)  # the join's horizon, from its Redis entry
        self.source = SampleSource(sc, lambda: dict(self.position.offsets))
        wait_until_reachable(
            lambda: self.source.check(timeout_s=min(KAFKA_PROBE_S, wait_s)),
            f"Kafka at {sc.kafka.bootstrap_servers}",
            wait_s,
            log,
            (Unavailable,),
        )
        self.registry.restore_from_disk()
        self.publisher = Publisher(sc, self.registry, self.store, self.metrics)
        self.publisher.sync_current()
        self.checkpoints = CheckpointStore(sc.checkpoint_dir, sc.checkpoint.keep)
        position = self.checkpoints.load()
        if position is not None:
            self.state = self.checkpoints.restore(self.config, position)
            self.dedup = self.checkpoints.load_dedup(position, sc.dedup.horizon, sc.dedup.max_entries)
            self.checkpoints.load_scores(position, self.publisher.scores)
            self.position = position
        else:
            self.position = Position()
            self.dedup = Dedup(sc.dedup.horizon, sc.dedup.max_entries)
            if sc.warm_start is not None:
                self._warm_start(sc.warm_start)
        self._warm_version = self.position.extra.get("warm_version")
        teacher = sc.distill_from or self.config.model.cascade_teacher  # a two-tower model's fine model too
        if teacher is not None:
            from trainer.export import ExportedModel

            self.teacher = ExportedModel(teacher)
        self.source.subscribe()
        self.summaries = Summaries(sc.model_dir / "tensorboard" if sc.tensorboard else None)
        # 0: any free port (the common command-line convention); the one bound is in the start line
        metrics_port = None if sc.metrics_port is None else self.metrics.serve(sc.metrics_port, sc.metrics_host)
        log.info(
            "trainer sidecar started",
            extra={
                "topic": sc.topic,
                "model_dir": str(sc.model_dir),
                "resumed": self.position.checkpoint is not None,
                "metrics_port": metrics_port,
            },
        )

    def _warm_start(self, path: Any) -> None:
        from trainer.export import latest_version
        from trainer.warm_start import warm_start

        previous = self.state
        self.state = warm_start(path, self.config)
        if previous is not None:  # a newer offline model mid-stream: the same stream goes on (its start, counts)
            self.state.pending.continue_stream(previous.pending)
        self.checkpoints.invalidate()
        latest = latest_version(path)
        self._warm_version = int(latest.name) if latest is not None else None
        self.position.extra["warm_version"] = self._warm_version

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        sc = self.sc
        batcher = Batcher(sc.batch.size, sc.batch.max_wait / 1000.0)
        now = self.clock()
        last_message = last_checkpoint = last_export = last_housekeeping = now
        steps_at_checkpoint = self.state.step if self.state is not None else 0
        exit_idle_s = None if sc.exit_when_idle is None else sc.exit_when_idle / 1000.0
        prefetch = self._prefetch = Prefetcher(self.source, sc.batch.size, POLL_S)
        prefetch.start()
        try:
            while not self._stop.is_set():
                messages = prefetch.get(POLL_S)
                now = self.clock()
                if messages:
                    last_message = now
                messages = self._in_order(messages, prefetch, now)
                if messages:
                    samples = self._admit(messages)
                    taken = 0
                    while taken < len(messages):
                        taken = batcher.fill(messages, samples, taken, now)
                        if batcher.ready(now):
                            self._train(batcher.take())
                if batcher.ready(now) or (batcher.pending == 0 and batcher.has_positions):
                    self._train(batcher.take())
                now = self.clock()
                steps = self.state.step if self.state is not None else 0
                checkpoint_due = (
                    steps - steps_at_checkpoint >= sc.checkpoint.every_steps
                    or now - last_checkpoint >= sc.checkpoint.every / 1000.0
                )
                export_due = now - last_export >= sc.export_interval / 1000.0
                if checkpoint_due or export_due:
                    self._train(batcher.take())  # a checkpoint covers no consumed-but-untrained sample
                    if export_due:
                        self._export()
                        # An export that took long still leaves half an interval of training before the next.
                        last_export = max(now, self.clock() - sc.export_interval / 2000.0)
                    else:
                        self.checkpoint()
                    last_checkpoint = now
                    steps_at_checkpoint = self.state.step if self.state is not None else 0
                if now - last_housekeeping >= HOUSEKEEPING_S:
                    last_housekeeping = now
                    self._housekeeping()
                drained = prefetch.drained and not (self._order is not None and len(self._order))
                if exit_idle_s is not None and drained and now - last_message >= exit_idle_s:
                    self.summary.stopped_by = "idle"
                    break
            prefetch.stop()
            self._train(batcher.take())
            self._export(final=True)  # idle or SIGTERM: the last seconds of training reach a version too
            self.checkpoint()
        finally:
            prefetch.stop()
            self.close()
        self.summary.versions = self.registry.versions()
        return self.summary

    def _in_order(self, messages: list[Decoded], prefetch: Prefetcher, now: float) -> list[Decoded]:
        """``messages`` and those held before, as far as they can go on in emit-time order
        (:mod:`trainer.sidecar.ordering`); as consumed with ``sidecar.order.by_emit_time: false``."""
        order = self._order
        if order is None:
            return messages
        order.add(messages)
        forced = order.forced
        out = order.take(self.source.assigned_now, prefetch.caught_up, now)
        if order.forced > forced:
            self.metrics.order_forced.inc(order.forced - forced)
        return out

    def _admit(self, messages: list[Decoded]) -> list[Sample | None]:
        """Each message's sample to train: None for a dead letter or a repeat (both counted)."""
        seen = self.dedup.seen
        out: list[Sample | None] = []
        deadletters = repeats = 0
        for decoded in messages:
            sample = decoded.sample
            if sample is None:
                deadletters += 1
            elif sample.sample_id is not None and seen(sample.sample_id, sample.emit_time_ms):
                repeats += 1
                sample = None
            out.append(sample)
        if deadletters:
            self.metrics.deadletters.inc(deadletters)
            self.summary.deadletters += deadletters
        if repeats:
            self.metrics.dedup_drops.inc(repeats)
            self.summary.dedup_drops += repeats
        return out

    def _train(self, batch: Batch) -> None:
        if batch.samples:
            self._train_samples(batch)
        self.position.offsets.update(batch.positions)

    def _train_samples(self, batch: Batch) -> None:
        table = SampleTable(batch.samples)
        if self.state is None:
            from trainer.features import FeatureSpec
            from trainer.state import TrainerState

            # Features laid out from the first batch, but not the starting bias: a cold stream's first
            # batch holds POSITIVEs only (NEGATIVEs come out a window later), and a bias at its rate
            # (logit ~9) saturates the model for thousands of steps. The bias starts at logit 0.
            self.state = TrainerState(self.config, FeatureSpec.from_table(table, self.config.features))
            log.info("model laid out from the first batch", extra={"spec": self.state.spec.to_json()})
        state = self.state
        if self._prefetch is not None:
            self._prefetch.prepare_with(state.encoder.prepare)  # the current state's, after a warm start too
        prepared = batch.prepared(table, state.spec) or state.prepare(table)
        encoded = state.encode(prepared, np.arange(len(table)))
        current = self.publisher.score_current(table)
        teacher = self.teacher.predict(table) if self.teacher is not None else None
        # the same targets as fit's, times included: the delayed-feedback correction reads them
        step_targets = fit_targets(table, np.arange(len(table)), teacher)
        step_targets["partition"] = np.asarray(batch.partitions, np.int64)  # each its own censored stream
        with self._prefetch.window() if self._prefetch is not None else nullcontext():  # the poller decodes meanwhile
            result, logits = state.train_and_score(encoded, step_targets)
        # progressive validation: the step's predictions were made before it trained on the batch
        probability = 1.0 / (1.0 + np.exp(-logits))
        progressive = calibrated(probability, state.loss.calibration, self.config.loss.fnc_max_probability, np)
        self.publisher.record_scores(table, progressive, current, self.position.samples_trained)
        self.position.samples_trained += len(table)
        self.summary.samples_trained = self.position.samples_trained
        self.summary.steps += 1
        self.metrics.samples.inc(len(table))
        self.metrics.steps.inc()
        self.metrics.loss.set(result.get("total_loss", result.get("loss", 0.0)))
        if state.step % self.sc.summary_every_steps == 0:
            self._report(result)
        self.publisher.check_live()
        if self.summary.first_trained_at is None:
            self.summary.first_trained_at = self.clock()
        else:
            self.summary.last_trained_at = self.clock()
            self.summary.span_samples += len(table)

    def _report(self, result: dict[str, float]) -> None:
        assert self.state is not None
        now, trained = self.clock(), self.position.samples_trained
        if self._last_report is not None and now > self._last_report[0]:
            self.metrics.samples_per_s.set((trained - self._last_report[1]) / (now - self._last_report[0]))
        self._last_report = (now, trained)
        progressive = self.publisher.scores.progressive_metrics()
        for gauge, key in (
            (self.metrics.progressive_auc, "auc"),
            (self.metrics.progressive_bias, "prediction_bias"),
            (self.metrics.progressive_logloss, "logloss"),
        ):
            if progressive.get(key) is not None:
                gauge.set(progressive[key])
        self.summaries.scalars(
            self.state.step,
            {
                "loss": result.get("total_loss"),
                "progressive/auc": progressive.get("auc"),
                "progressive/prediction_bias": progressive.get("prediction_bias"),
                "progressive/logloss": progressive.get("logloss"),
                "samples_trained": float(self.position.samples_trained),
            },
        )

    def checkpoint(self) -> None:
        """State + dedup + offsets to disk, then the offsets to Kafka."""
        if self.state is None:
            return
        self.source.flush(time.monotonic() + self.sc.retry_for / 1000.0)
        self.checkpoints.save(self.state, self.position, self.dedup, self.publisher.scores)
        self.metrics.checkpoints.inc()
        if self._prefetch is not None and self._prefetch.running:
            self._prefetch.commit(self.position.offsets)
        else:
            self.source.commit(self.position.offsets, wait=True)

    def _export(self, final: bool = False) -> bool:
        """Checkpoint, then export, gate and register a version if anything was trained since the last."""
        if self.state is None:
            return False
        last = self.publisher.last_samples_trained()
        if last is not None and last >= self.position.samples_trained and not final:
            return False
        if final and last == self.position.samples_trained:
            return False
        self.checkpoint()
        candidate = self.publisher.next_candidate(self.position.samples_trained, self.position.offsets)
        record = self.publisher.export_and_gate(self.state, candidate)
        if record is not None:
            self.summary.versions.append(record)
        return True

    def _housekeeping(self) -> None:
        if self._prefetch is not None:
            self.metrics.lag(self._prefetch.lag)
        self.publisher.sync_current()
        watch = self.sc.watch_dir
        if watch is not None:
            from trainer.export import latest_version

            latest = latest_version(watch)
            if latest is not None and (self._warm_version is None or int(latest.name) > self._warm_version):
                log.info("newer offline model: re-initialising from it", extra={"export": str(latest)})
                self._warm_start(watch)

    def close(self) -> None:
        for closer in (self.source.close, self.summaries.close, self.registry.close):
            try:
                closer()
            except Exception as exc:  # closing must not hide the error that ended the loop
                log.warning("error while closing", extra={"error": str(exc)})
