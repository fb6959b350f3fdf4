"""The developer stack: start the local Apache Kafka broker, redis-server and Flink session cluster.

Below the product: it imports only `common` and the standard library, and no product module imports it
(tests/test_layout.py). Tests, benchmarks, the soak run and `python -m infra.local` use it.
"""
