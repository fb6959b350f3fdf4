"""The join's benchmarks (docs/performance.md), each `python -m jobs.bench.<name>`.

replay (engines on one events file, with its contenders flink and flink_sql), embedded (the embedded
runtime against a passthrough; also `python -m jobs.bench_embedded`), kafka (the engines on Kafka).
`make bench` runs them from the explicit list in infra/bench.py.
"""
