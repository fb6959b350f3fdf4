"""The local stack: Apache Kafka (KRaft) and a redis-server on loopback, for the embedded default and tests.

`python -m infra.local up | down | status` (and `make up` / `make down`) drive it; `topics` only creates
the topics on the broker that `KAFKA_BOOTSTRAP_SERVERS` names (used by docker-compose's init step). Both
services keep their data in the state folder, so `down` then `up` loses nothing: the broker its
topics and consumer-group offsets (`broker/`), Redis the join's checkpoints and the trainer's model
registry (`redis/`, an append-only file fsynced every second: a crash of the machine loses at most
the last second). `clean-state` (`make clean-state`) deletes both on purpose; it refuses while the
stack runs. `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` select external services instead: then nothing
is started for them, but topics are still created. The broker itself: `devstack.kafka_broker`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from common.config import DurationMs, StrictConfig, load_config
from common.defaults import LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT
from common.topics import create_topics
from devstack import kafka_broker
from devstack.errors import DevStackError
from devstack.processes import ManagedProcess, free_port, port_is_open, read_state, spawn, wait_until, write_state

INFRA_DIR = Path(__file__).resolve().parents[1] / "infra"  # the stack's shipped configuration files
DEFAULT_TOPICS_FILE = INFRA_DIR / "topics.yaml"
DEFAULT_STATE_DIR = Path(".state")
STATE_FILE_NAME = "local-stack.json"
# What `up` keeps in the state folder and `clean-state` deletes: the services' data and logs.
STACK_DATA = ("broker", "redis", "broker.log", "redis.log")


class TopicSettings(StrictConfig):
    partitions: int | None = Field(default=None, ge=1)
    retention: DurationMs | None = None


class TopicsFile(StrictConfig):
    """`infra/topics.yaml`: per-topic partitions and retention, with defaults."""

    defaults: TopicSettings = TopicSettings(partitions=4, retention=7 * 86_400_000)
    topics: dict[str, TopicSettings]

    def resolved(self) -> dict[str, tuple[int, int]]:
        """Topic name -> (partitions, retention in ms)."""
        return {
            name: (
                spec.partitions or self.defaults.partitions or 1,
                spec.retention if spec.retention is not None else self.defaults.retention or -1,
            )
            for name, spec in self.topics.items()
        }


def load_topics(path: Path = DEFAULT_TOPICS_FILE) -> dict[str, tuple[int, int]]:
    return load_config(path, TopicsFile).resolved()


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise DevStackError("redis-server is not installed; run 'make setup' (or 'apt-get install redis-server')")
    return path


def kafka_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000, "log_level": 0})
        admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return True


def redis_ready(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except Exception:
        return False


def start_broker(port: int, log: Path, timeout_s: float = 60.0) -> ManagedProcess:
    """Start Apache Kafka (KRaft, single node) on 127.0.0.1:port and wait until it answers metadata requests.

    Its folder (`server.properties`, `data/`) is next to `log`, named after it (`broker.log` -> `broker/`);
    the storage is formatted on first start and kept afterwards.
    """
    if port_is_open(port):
        raise DevStackError(f"cannot start the broker: port {port} on 127.0.0.1 is already in use")
    properties = kafka_broker.prepare(log.parent / log.stem, port, free_port)
    pid = spawn("broker", kafka_broker.java_command("kafka.Kafka", str(properties)), log)
    proc = ManagedProcess("broker", pid, f"127.0.0.1:{port}", str(log))
    try:
        wait_until(lambda: proc.alive() and port_is_open(port) and kafka_ready(proc.address, 1.0), timeout_s,
                    f"the broker on {proc.address} (log: {log})")
    except DevStackError:
        proc.stop()
        raise
    return proc


def start_redis(port: int, log: Path, timeout_s: float = 15.0, data_dir: Path | None = None) -> ManagedProcess:
    """Start redis-server on 127.0.0.1:port and wait for PING (which waits out the loading of its data).

    ``data_dir``: keep the data there in an append-only file (``appendfsync everysec``), found again by
    the next start; None: in memory only (tests' private servers; should one turn persistence on, its
    files go beside the log, never into the current folder)."""
    if port_is_open(port):
        raise DevStackError(f"cannot start redis-server: port {port} on 127.0.0.1 is already in use")
    if data_dir is None:
        log.parent.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "no", "--dir", str(log.parent.resolve())]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data_dir.resolve())]
    pid = spawn("redis", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           *persistence, "--protected-mode", "yes", "--logfile", ""], log)
    proc = ManagedProcess("redis", pid, f"redis://127.0.0.1:{port}/0", str(log))
    try:
        wait_until(lambda: redis_ready(proc.address), timeout_s, f"redis-server on port {port}")
    except DevStackError:
        proc.stop()
        raise
    return proc


@dataclass
class StackState:
    """What `up` started, recorded in the state file so that `status` and `down` find it."""

    kafka_bootstrap_servers: str
    redis_url: str
    processes: list[ManagedProcess] = field(default_factory=list)

    def save(self, path: Path) -> None:
        write_state(path, self)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        data = read_state(path, "up")
        if data is None:
            return None
        return cls(data["kafka_bootstrap_servers"], data["redis_url"],
                   [ManagedProcess(**p) for p in data.get("processes", [])])


class LocalStack:
    """Starts, reports on and stops the broker + Redis pair, recording it in `<state_dir>/local-stack.json`."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, kafka_port: int = LOCAL_KAFKA_PORT,
                 redis_port: int = LOCAL_REDIS_PORT, topics_file: Path = DEFAULT_TOPICS_FILE,
                 environ: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.state_file = state_dir / STATE_FILE_NAME
        self.kafka_port = kafka_port
        self.redis_port = redis_port
        self.topics_file = topics_file
        self.environ = dict(os.environ if environ is None else environ)

    def up(self, log: Callable[[str], None] = print) -> StackState:
        current = StackState.load(self.state_file)
        if current and all(p.alive() for p in current.processes):
            log("local stack is already up")
            return current
        if current:  # half-dead: clean up before starting afresh
            self._stop(current)
        topics = load_topics(self.topics_file)
        started: list[ManagedProcess] = []
        try:
            bootstrap = self.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            if bootstrap:
                log(f"using external Kafka at {bootstrap}")
                if not kafka_ready(bootstrap, 5.0):
                    raise DevStackError(f"cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
            else:
                log(f"starting broker on 127.0.0.1:{self.kafka_port}")
                broker = start_broker(self.kafka_port, self.state_dir / "broker.log")
                started.append(broker)
                bootstrap = broker.address
            redis_url = self.environ.get("REDIS_URL")
            if redis_url:
                log(f"using external Redis at {redis_url}")
                if not redis_ready(redis_url):
                    raise DevStackError(f"cannot reach Redis at REDIS_URL={redis_url}")
            else:
                log(f"starting redis-server on 127.0.0.1:{self.redis_port}")
                redis_proc = start_redis(self.redis_port, self.state_dir / "redis.log", 60.0,
                                         data_dir=self.state_dir / "redis")
                started.append(redis_proc)
                redis_url = redis_proc.address
            created = create_topics(bootstrap, topics)
            log(f"topics: {len(topics)} configured, {len(created)} created")
        except BaseException:
            for proc in reversed(started):
                proc.stop()
            raise
        state = StackState(bootstrap, redis_url, started)
        state.save(self.state_file)
        return state

    def status(self) -> tuple[StackState | None, dict[str, bool]]:
        state = StackState.load(self.state_file)
        if state is None:
            return None, {}
        return state, {"kafka": kafka_ready(state.kafka_bootstrap_servers), "redis": redis_ready(state.redis_url)}

    def down(self, log: Callable[[str], None] = print) -> None:
        state = StackState.load(self.state_file)
        if state is None:
            log("local stack is not running")
            return
        self._stop(state)
        log("local stack stopped")

    def clean_state(self, log: Callable[[str], None] = print) -> None:
        """Delete what the stack keeps between runs (topics, consumer-group offsets, checkpoints, the
        model registry). Refuses while the stack runs: deleting a live server's files loses nothing
        at once and everything at its next start, which is worse than either."""
        state = StackState.load(self.state_file)
        if state is not None and any(p.alive() for p in state.processes):
            raise DevStackError(f"the local stack is running ({state.kafka_bootstrap_servers}, {state.redis_url}); "
                             "stop it with 'make down' before 'make clean-state'")
        removed = []
        for name in STACK_DATA:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(name)
        self.state_file.unlink(missing_ok=True)
        log(f"local stack state removed from {self.state_dir}: {', '.join(removed) or 'nothing was there'}")

    def _stop(self, state: StackState) -> None:
        for proc in reversed(state.processes):
            proc.stop()
        self.state_file.unlink(missing_ok=True)
