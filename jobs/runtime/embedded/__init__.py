"""The embedded runtime (`run --engine local`): Kafka in and out, state checkpointed to Redis, one shard
per input partition number. `runtime` is the loop; `shard`, `assignment`, `checkpointer`, `sink`,
`redis_state` and `metrics` its parts (docs/architecture.md)."""
