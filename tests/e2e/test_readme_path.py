"""The README's "Run it yourself on the local stack", command by command, as a user runs it.

The commands are read from the README's block itself, so the test and the text cannot drift apart, and
run with the venvs' Pythons they name, from a working folder that stands for the checkout: `infra` and
`.venv` link to this checkout's, so the relative paths of the commands (`infra/sample_join.yaml`,
`.venv/jobs/bin/python`) are the checkout's, while `.state/` (the stack's data, the trainer's models,
the samples dump) is the test's own. `make up` / `make down` run the Makefile's own targets there, with
`-o setup` (the venvs are already set up; `make setup` is not this test's to run). The stack listens on
the fixed ports of `make up`, as in the README; when something else holds them, the test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from common.defaults import LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT
from devstack.processes import port_is_open
from devstack.stack import STATE_FILE_NAME, StackState
from tests.infra.test_shipped_configs import SHIPPED_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Run it yourself on the local stack"
STACK_PORTS = (LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT)
# the shipped configs' metrics ports, served while the join and the trainer run
METRICS_PORTS = (9108, 9109)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def readme_commands() -> list[str]:
    """The commands of the section's ```bash blocks, in order (a line ending in a backslash continues)."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    section = text[text.index(SECTION):]
    section = section[:section.find("\n## ", len(SECTION))]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert blocks, f"README.md's {SECTION!r} has no bash block"
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def argv_of(command: str) -> list[str]:
    """A README line as argv; `make TARGET` is the Makefile's own target, without its `setup` step."""
    argv = shlex.split(command)
    if argv[0] == "make":
        return ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-o", "setup", *argv[1:]]
    return argv


def test_the_readme_commands_run_as_written(tmp_path: Path) -> None:
    busy = [port for port in (*STACK_PORTS, *METRICS_PORTS) if port_is_open(port)]
    if busy:
        pytest.skip(f"the README's path needs 127.0.0.1 ports {busy}, which something else holds (make up?)")
    commands = readme_commands()
    assert commands[0] == "make up" and "make down" in commands, commands
    # TF Serving's container needs a Docker engine, which the CI machines do not run; the config it
    # reads is checked below instead (tests/trainer/test_serving.py loads the version it names)
    commands = [c for c in commands if not c.startswith("docker run ")]

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("infra", ".venv"):
        (checkout / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if k not in SHIPPED_VARIABLES}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    log = tmp_path / "commands.log"

    def run(command: str, timeout_s: float = 300) -> str:
        started = time.monotonic()
        done = subprocess.run(argv_of(command), cwd=checkout, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        with log.open("a") as out:
            out.write(f"$ {command}  # exit {done.returncode}, {time.monotonic() - started:.1f} s\n"
                      f"{done.stdout}{done.stderr}\n")
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout

    outputs: dict[str, str] = {}
    stack: StackState | None = None
    try:
        for command in commands:
            outputs[command] = run(command)
            if command == "make up":
                stack = StackState.load(checkout / ".state" / STATE_FILE_NAME)
            if command.startswith(".venv/trainer/bin/python -m trainer versions"):
                # the same listing as one JSON object, for the checks below
                outputs["versions --json"] = run(f"{command} --json")
    finally:
        if port_is_open(LOCAL_KAFKA_PORT) or port_is_open(LOCAL_REDIS_PORT):
            run("make down")  # a command failed before the README's own `make down`

    trained = json.loads(next(o for c, o in outputs.items() if " -m trainer run " in c).strip().splitlines()[-1])
    assert trained["samples_trained"] > 0 and trained["stopped_by"] == "idle", trained
    versions = json.loads(outputs["versions --json"])
    published = [v for v in versions["versions"] if v["status"] == "published"]
    assert published and versions["current"] is not None, versions
    assert any(v["status"] == "published" for v in trained["versions"]), trained
    scores = json.loads(next(o for c, o in outputs.items() if " -m trainer evaluate " in c))
    assert scores["count"] > 0 and 0.5 < scores["auc"] < 1.0, scores
    # a base folder of versions: evaluate scores one of them (the highest-numbered)
    assert Path(scores["model"]).name in {str(v["version"]) for v in versions["versions"]}, scores["model"]
    served = next(c for c in commands if " -m trainer serving-config " in c)
    config = (checkout / shlex.split(served)[shlex.split(served).index("--out") + 1]).read_text()
    assert f"versions: {versions['current']}\n" in config, config  # TF Serving would serve the current one

    assert stack is not None and len(stack.processes) == 2, stack  # make up started a broker and redis-server
    assert not [p for p in stack.processes if p.alive()], "make down left a process of the stack running"
    assert not [port for port in STACK_PORTS if port_is_open(port)], "make down left a port open"
    assert _processes_in(checkout) == []  # nor any other process started from the checkout


def _processes_in(folder: Path) -> list[str]:
    """Processes whose working folder is `folder` or below it (pid and the start of the command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = (proc / "cwd").resolve(strict=True)
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.is_relative_to(folder.resolve()):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found
