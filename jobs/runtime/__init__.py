"""The join's runtimes: thin adapters that feed the pure core (`jobs.core`) and write what it emits.

One package per runtime: `replay/` (JSON-lines files, no network), `embedded/` (Kafka in and out, state
checkpointed to Redis, on one machine), `flink/` (PyFlink: the same core in a KeyedProcessFunction, and
the job's entry point `jobs.runtime.flink.job`). What they share sits here: `kafka_io` (the wire format
over `schemas.serde`), `state_bytes` (a state's serialized form), `watermarks`, `summary` (what a run did).
"""
