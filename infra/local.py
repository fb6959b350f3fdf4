"""`python -m infra.local`: the developer stack's command line (`make up`, `make down`, `make flink-up` ...).

The services themselves are started by `devstack` (below the product); this command sits above it and
the join, since `flink-submit` checks the job's config and jars before it submits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from common.cli import EXIT_FAILED, EXIT_USAGE, Parser, command_prog, fail, port
from common.defaults import LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT
from common.errors import CommonError, ConfigError
from common.topics import create_topics
from devstack.flink import DEFAULT_REST_PORT, ClusterState, FlinkCluster
from devstack.stack import DEFAULT_STATE_DIR, DEFAULT_TOPICS_FILE, INFRA_DIR, LocalStack, load_topics
from infra.errors import InfraError

FLINK_COMMANDS = ("flink-up", "flink-down", "flink-submit")
DEFAULT_JOB_CONFIG = INFRA_DIR / "flink" / "local" / "sample-join.yaml"


def run_flink_command(command: str, state_dir: Path, rest_port: int, job_config: Path,
                      from_checkpoint: str | None) -> int:
    """``flink-up``, ``flink-down`` or ``flink-submit`` of ``python -m infra.local``."""
    cluster = FlinkCluster(state_dir, rest_port)
    if command == "flink-up":
        cluster.up()
    elif command == "flink-down":
        cluster.down()
    else:
        from jobs.config import SampleJoinConfig
        from jobs.errors import JobError
        from jobs.runtime.flink.job import job_jars

        if ClusterState.load(cluster.state_file) is None:
            raise InfraError("the Flink cluster is not running; start it with 'make flink-up'")
        try:
            job_jars(SampleJoinConfig.load(job_config))  # fail fast, in one line, without them
        except JobError as exc:
            raise InfraError(str(exc)) from None
        job_id = cluster.submit(job_config, from_checkpoint=from_checkpoint)
        print(f"submitted job {job_id}: {cluster.rest_url}/#/job/running/{job_id}/overview")
    return 0


PROG = "python -m infra.local"
COMMANDS = {
    "up": "start the broker and redis-server (data kept in the state folder) and create the topics",
    "down": "stop them (their data stays for the next up)",
    "status": "the stack's addresses and health (exit 1 when not running or unhealthy)",
    "topics": "create the configured topics on $KAFKA_BOOTSTRAP_SERVERS (or the local broker)",
    "clean-state": "delete the stack's data: topics, offsets, checkpoints, the model registry (refused while up)",
    "flink-up": "start the local Flink session cluster (JobManager + TaskManager)",
    "flink-down": "stop the local Flink session cluster",
    "flink-submit": "run the sample join on the local Flink session cluster",
}


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Start, inspect or stop the local Apache Kafka broker and redis-server (up, down, status, "
                    "topics; clean-state deletes their data: topics, checkpoints, the model registry), or the "
                    "local Flink session cluster (flink-up, flink-down, flink-submit). "
                    "KAFKA_BOOTSTRAP_SERVERS / REDIS_URL select external services instead.",
    )
    state = Parser(add_help=False)
    state.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                       help="where the state file, the services' data and logs live")
    stack = Parser(add_help=False)
    stack.add_argument("--kafka-port", type=port, default=LOCAL_KAFKA_PORT, metavar="PORT", help="the broker's port")
    stack.add_argument("--redis-port", type=port, default=LOCAL_REDIS_PORT, metavar="PORT", help="redis-server's port")
    stack.add_argument("--topics", type=Path, default=DEFAULT_TOPICS_FILE, metavar="TOPICS.yaml",
                       help="topics config")
    flink = Parser(add_help=False)
    flink.add_argument("--flink-rest-port", type=port, default=DEFAULT_REST_PORT, metavar="PORT",
                       help="the cluster's REST and web UI port")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", required=True)
    parents = {"up": [state, stack], "down": [state], "status": [state], "topics": [stack],
               "clean-state": [state], "flink-up": [state, flink], "flink-down": [state, flink],
               "flink-submit": [state, flink]}
    for name, text in COMMANDS.items():
        command = sub.add_parser(name, parents=parents[name], help=text, description=text[0].upper() + text[1:] + ".")
        if name == "status":
            command.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "topics":
            command.add_argument("--config", type=Path, metavar="CONFIG.yaml",
                                 help="create them on the Kafka cluster of this sample-join config (its brokers and "
                                 "security, secrets from the file or its environment) (default: none)")
        if name == "flink-submit":
            command.add_argument("--job-config", type=Path, default=DEFAULT_JOB_CONFIG, metavar="CONFIG.yaml",
                                 help="the sample-join config")
            command.add_argument("--from-checkpoint", metavar="PATH",
                                 help="resume from this checkpoint or savepoint (default: none: a fresh start)")
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    prog = command_prog(args, PROG)
    try:
        if args.command in FLINK_COMMANDS:
            return run_flink_command(args.command, args.state_dir, args.flink_rest_port,
                               getattr(args, "job_config", DEFAULT_JOB_CONFIG), getattr(args, "from_checkpoint", None))
        if args.command == "topics":
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{args.kafka_port}"
            client: dict[str, object] = {}
            if args.config is not None:
                from jobs.config import SampleJoinConfig

                client = SampleJoinConfig.load(args.config).kafka.client_settings("admin")
                bootstrap = str(client.pop("bootstrap.servers"))
            topics = load_topics(args.topics)
            created = create_topics(bootstrap, topics, client=client)
            print(f"topics on {bootstrap}: {len(topics)} configured, {len(created)} created")
            return 0
        stack = LocalStack(args.state_dir, getattr(args, "kafka_port", LOCAL_KAFKA_PORT),
                           getattr(args, "redis_port", LOCAL_REDIS_PORT), getattr(args, "topics", DEFAULT_TOPICS_FILE))
        if args.command == "up":
            started = stack.up()
            print(f"KAFKA_BOOTSTRAP_SERVERS={started.kafka_bootstrap_servers}")
            print(f"REDIS_URL={started.redis_url}")
            return 0
        if args.command == "down":
            stack.down()
            return 0
        if args.command == "clean-state":
            stack.clean_state()
            return 0
        state, health = stack.status()
        if state is None:
            print(json.dumps({"running": False}) if args.json else "local stack is not running")
            return 1
        healthy = all(health.values())
        if args.json:
            print(json.dumps({"running": healthy, "kafka_bootstrap_servers": state.kafka_bootstrap_servers,
                              "redis_url": state.redis_url, "health": health}))
        else:
            print(f"kafka  {state.kafka_bootstrap_servers}  {'ok' if health['kafka'] else 'DOWN'}")
            print(f"redis  {state.redis_url}  {'ok' if health['redis'] else 'DOWN'}")
        return 0 if healthy else 1
    except ConfigError as exc:  # topics.yaml or the job's config
        return fail(prog, exc, EXIT_USAGE)
    except CommonError as exc:
        return fail(prog, exc, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
