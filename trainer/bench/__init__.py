"""The trainer's benchmarks (docs/performance.md), each `python -m trainer.bench.<name>`.

delayed_feedback (the losses' quality on delayed labels, trainer/BENCHMARK.md), sidecar (training from
Kafka against the same model fed from memory). `make bench` runs them from the list in infra/bench.py.
"""
