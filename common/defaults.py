"""The defaults both deployables share: the local stack's addresses and the join's horizon.

The addresses are the defaults of :mod:`common.connection`'s Kafka and Redis models, which the join's
config (``kafka`` / ``redis``) and the trainer's (``sidecar.kafka`` / ``sidecar.redis``) both derive
from, so a stack started with ``make up`` (whose launcher binds these ports) is found by both halves
without a flag; the shipped YAML files spell the same addresses and tests hold them to these. The
horizons are the defaults of the join's tasks and of the trainer's loss and dedup. Topic names live
in :mod:`common.topics`.

Ports are chosen not to clash with services commonly already running (Kafka 9092, Redis 6379).
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``, read when a config is built, select external services
instead.
"""

import os

LOCAL_KAFKA_PORT = 19092
LOCAL_REDIS_PORT = 16379
LOCAL_KAFKA_BOOTSTRAP = f"127.0.0.1:{LOCAL_KAFKA_PORT}"
LOCAL_REDIS_URL = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"

HOUR_MS = 3_600_000
# H: the join's default attribution horizon (a label later than this after its impression is
# unmatched), and so the trainer's default ``loss.attribution_horizon_ms``, which must equal it.
ATTRIBUTION_HORIZON_MS = 24 * HOUR_MS
# The trainer's dedup remembers a sample_id at least the horizon; twice it by default, a margin for
# partitions whose event time lags the others (the dedup's clock is the largest emit time seen).
DEDUP_HORIZON_MS = 2 * ATTRIBUTION_HORIZON_MS


def kafka_bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or LOCAL_KAFKA_BOOTSTRAP


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
