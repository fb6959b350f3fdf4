"""The online trainer: Wide & Deep (iQIYI variant) with delayed-feedback corrections (docs/trainer.md).

    python -m trainer fit --samples SAMPLES.jsonl [--samples MORE ...] --loss pu --export DIR [--seed N]
    python -m trainer evaluate --model DIR --samples SAMPLES.jsonl --json
    python -m trainer run --config TRAINER.yaml [--exit-when-idle 5s]     # the streaming sidecar
    python -m trainer versions | rollback --redis-url URL --model-dir DIR
    python -m trainer.bench.delayed_feedback  # the delayed-feedback benchmark (trainer/BENCHMARK.md)
    python -m trainer.bench.sidecar           # sidecar throughput from Kafka vs from memory

Modules: :mod:`~trainer.samples` (reading JSONL/Avro samples), :mod:`~trainer.vocab` (dynamic
vocabularies), :mod:`~trainer.features` (samples -> model inputs, training and serving paths),
:mod:`~trainer.layers`, :mod:`~trainer.models`, :mod:`~trainer.losses`, :mod:`~trainer.metrics`,
:mod:`~trainer.state` (config + vocabularies + model + optimizers: the one train step, checkpoints),
:mod:`~trainer.export` (SavedModel export and loading), :mod:`~trainer.fit`, :mod:`~trainer.evaluate`,
:mod:`~trainer.sidecar` (the streaming trainer: Kafka, checkpoints, versions, gate, registry).
"""
