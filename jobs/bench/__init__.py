"""The join's benchmarks (docs/performance.md), each `python -m jobs.bench.<name>`.

replay (engines on one events file, with its contenders flink and flink_sql), embedded (the embedded
runtime against a passthrough), kafka (the engines on Kafka), and the soak run (`make soak`).
`make bench` runs them from the explicit list in infra/bench.py. Only this subpackage (and the tests)
may start services through `devstack`; no product module imports it or this subpackage.
"""
