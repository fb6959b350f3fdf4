"""Addresses of the local stack, shared by the launcher, the job and trainer configs and the docs.

Ports are chosen not to clash with services commonly already running (Kafka 9092, Redis 6379).
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` select external services instead.
"""

import os

LOCAL_KAFKA_PORT = 19092
LOCAL_REDIS_PORT = 16379


def kafka_bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{LOCAL_KAFKA_PORT}"


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
