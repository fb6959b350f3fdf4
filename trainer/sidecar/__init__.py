"""The trainer sidecar (`python -m trainer run`): trains continuously from ``samples.<task>`` on Kafka,
checkpoints with the input offsets, exports model versions, gates and publishes them through a Redis
registry, and rolls a degraded version back.

Its config is the ``sidecar:`` section of :mod:`trainer.config`. Modules, one concern each:
:mod:`.consume` (Kafka, decode, dead letter), :mod:`.dedup`, :mod:`.batching`, :mod:`.checkpoint`,
:mod:`.versions`, :mod:`.gate`, :mod:`.registry`, :mod:`.rollback`, :mod:`.metrics`, :mod:`.loop`,
:mod:`.cli`.
Nothing here imports TensorFlow at package import time.
"""
