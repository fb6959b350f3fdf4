"""Every command's ``--help``, ``--version`` and bad values, read as a user reads them (docs/cli.md, Conventions).

Each command and subcommand is run in-process (its ``main`` with SystemExit captured) and its help text
parsed: ``--version`` is there and prints the project's version; a flag that takes a value and is not
required shows its default; a duration refuses a bare number and a port refuses 70000, each with exit
status 2 and one line naming the command and the flag; a subcommand's ``--help`` is its own; no command
shows an old spelling of a flag, and a flag means the same in every command that has it. The trainer's
commands are walked here too (their ``--help`` needs no TensorFlow) and again in its own venv
(tests/trainer/test_cli_conventions.py). The helpers import the commands lazily, so that the trainer's
venv can use them without the jobs side's packages.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.config import DURATION_EXPECTED
from common.version import __version__

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Command:
    name: str  # as typed after `python -m`
    module: str  # whose main() runs it
    subcommands: tuple[tuple[str, ...], ...] = ((),)

    def prog(self, sub: tuple[str, ...]) -> str:
        return " ".join(("python -m", self.name, *sub))


INFRA_LOCAL = ("up", "down", "status", "topics", "clean-state", "flink-up", "flink-down", "flink-submit")
TRAINER = Command("trainer", "trainer.__main__", ((), ("fit",), ("evaluate",), ("run",), ("versions",),
                                                   ("rollback",), ("registry",), ("registry", "rebuild"),
                                                   ("serving-config",), ("embeddings",), ("materialize",)))
COMMANDS = (
    Command("jobs.sample_join", "jobs.sample_join", ((), ("replay",), ("run",))),
    Command("jobs.generate", "jobs.generate"),
    TRAINER,
    Command("schemas", "schemas.__main__", ((), ("check",), ("release",), ("docs",))),
    Command("infra.local", "infra.local", ((), *((c,) for c in INFRA_LOCAL))),
    Command("infra.cat", "infra.cat"),
    Command("infra.demo", "infra.demo.__main__"),
    Command("infra.bench", "infra.bench"),
    Command("jobs.bench.soak", "jobs.bench.soak"),
    Command("jobs.bench.embedded", "jobs.bench.embedded"),
)
# `python -m` entry points not walked: the benchmarks run one by one under */bench/ (make bench runs them
# through infra.bench, which is walked) and the Flink job's entry point (flink run's, not a user's).
NOT_WALKED = {"jobs/runtime/flink/job.py"}
NOT_WALKED_FOLDER = "/bench/"

# One spelling per thing: the old spellings below still work (hidden from --help, one warning each) but no
# command shows them; the spellings a newcomer might expect from other tools are not used either.
OLD_SPELLINGS = {
    "--topic-impressions": "--impressions-topic",
    "--topic-feature-snapshots": "--feature-snapshots-topic",
    "--topic-labels": "--labels-topic",
    "--snapshots-topic": "--feature-snapshots-topic",
    "--json-summary": "--json",
    "--summary": "--json",
    "--minutes": "--duration",
}
NOT_OURS = {
    "--bootstrap-server": "--bootstrap-servers", "--brokers": "--bootstrap-servers", "--kafka": "--bootstrap-servers",
    "--redis": "--redis-url", "--group": "--group-id", "--config-file": "--config", "--conf": "--config",
    "--prometheus-port": "--metrics-port", "--metrics": "--metrics-port", "--port": "--metrics-port",
    "--topic-samples": "--samples-prefix", "--unmatched": None, "--deadletter": None,  # None: checked below
}
# What a flag takes, by its placeholder: the same flag takes the same kind of value in every command.
DURATION, PORT, COUNT = "DURATION", "PORT", "N"
# A switch (print one JSON object on stdout) in the product's commands; a FILE to write the report to in
# the soak and benchmark tools.
SWITCH_OR_FILE = {"--json"}


@dataclass
class Option:
    flags: tuple[str, ...]
    metavar: str
    help: str = ""
    required: bool = False

    @property
    def flag(self) -> str:
        return next(f for f in self.flags if f.startswith("--"))


@dataclass
class Help:
    prog: str
    text: str
    options: dict[str, Option] = field(default_factory=dict)


def run_main(module: str, argv: list[str]) -> tuple[int, str, str]:
    """``module.main(argv)`` in-process: (exit status, stdout, stderr), SystemExit captured."""
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return int(code or 0), out.getvalue(), err.getvalue()


ENTRY = re.compile(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$")


def read_help(command: Command, sub: tuple[str, ...]) -> Help:
    code, out, err = run_main(command.module, [*sub, "--help"])
    assert code == 0 and not err, f"{command.prog(sub)} --help: exit {code}: {err}"
    usage = out.split("\n\n", 1)[0]
    parsed = Help(command.prog(sub), out)
    current: Option | None = None
    for line in out.splitlines():
        match = ENTRY.match(line)
        if match:
            parts = [p.split(" ", 1) for p in match.group(1).split(", ")]
            flags = tuple(p[0] for p in parts)
            current = Option(flags, parts[-1][1] if len(parts[-1]) > 1 else "", match.group(2) or "")
            flag = current.flag
            current.required = bool(current.metavar) and not re.search(r"\[" + re.escape(flag) + r"[\s\]]", usage)
            parsed.options[flag] = current
        elif current is not None and line.startswith("   ") and line.strip():
            current.help = f"{current.help} {line.strip()}".strip()
        else:
            current = None
    return parsed


def all_helps(commands: tuple[Command, ...] = COMMANDS) -> list[tuple[Command, tuple[str, ...], Help]]:
    return [(c, sub, read_help(c, sub)) for c in commands for sub in c.subcommands]


@pytest.fixture(scope="module")
def helps() -> list[tuple[Command, tuple[str, ...], Help]]:
    return all_helps()


def changelog_version() -> str:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    match = re.search(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", text, re.MULTILINE)
    assert match, "CHANGELOG.md has no released entry (## [X.Y.Z] - date)"
    return match.group(1)


# -- the rules, shared with tests/trainer/test_cli_conventions.py -------------------------------------
def check_version(command: Command, sub: tuple[str, ...], parsed: Help) -> None:
    assert "--version" in parsed.options, f"{parsed.prog} --help shows no --version"
    code, out, _ = run_main(command.module, [*sub, "--version"])
    assert (code, out.strip()) == (0, f"{parsed.prog} (odl-loop) {__version__}")


def check_own_help(parsed: Help) -> None:
    assert parsed.text.startswith(f"usage: {parsed.prog} "), parsed.text.splitlines()[0]


def check_defaults_shown(parsed: Help) -> None:
    missing = [o.flag for o in parsed.options.values() if o.metavar and not o.required and "(default: " not in o.help]
    assert not missing, f"{parsed.prog}: flags without their default in --help: {missing}"


def check_bad_values(command: Command, sub: tuple[str, ...], parsed: Help) -> None:
    """A duration without a unit, a port out of range, a count of 0: exit 2, one line naming the flag."""
    bad = {DURATION: ("10", f"{DURATION_EXPECTED}, got '10'"),
           PORT: ("70000", "expected a port 0..65535 (0: any free port), got '70000'"),
           COUNT: ("0", "expected a positive integer, got '0'")}
    for option in parsed.options.values():
        if option.metavar not in bad:
            continue
        value, message = bad[option.metavar]
        code, out, err = run_main(command.module, [*sub, option.flag, value])
        assert (code, out, err) == (2, "", f"{parsed.prog}: error: {option.flag}: {message}\n"), (option.flag, err)


def check_spellings(parsed: Help) -> None:
    shown = set(parsed.options)
    old = sorted(shown & set(OLD_SPELLINGS))
    assert not old, f"{parsed.prog} shows old spellings {old}; say {[OLD_SPELLINGS[f] for f in old]}"
    foreign = sorted(f for f in shown & set(NOT_OURS) if NOT_OURS[f] is not None)
    assert not foreign, f"{parsed.prog} spells {foreign}; the project says {[NOT_OURS[f] for f in foreign]}"


def check_same_meaning(walked: list[tuple[Command, tuple[str, ...], Help]]) -> None:
    """A flag takes the same kind of value everywhere: a duration is a DURATION in every command that has
    it, a port a PORT, a count an N; a switch is a switch everywhere."""
    kinds: dict[str, dict[str, str]] = {}
    for _, _, parsed in walked:
        for option in parsed.options.values():
            kinds.setdefault(option.flag, {})[parsed.prog] = option.metavar
    mixed = {}
    for flag, by_prog in kinds.items():
        values = set(by_prog.values())
        typed = values & {DURATION, PORT, COUNT}
        if (typed and len(values) > 1) or ("" in values and len(values) > 1 and flag not in SWITCH_OR_FILE):
            mixed[flag] = by_prog
    assert not mixed, f"flags that take different kinds of values in different commands: {mixed}"


# -- the tests -------------------------------------------------------------------------------------
def test_the_walk_covers_every_command() -> None:
    """Every `python -m` entry point of the product and the tools is walked, or named as not walked."""
    walked = {c.module.replace(".", "/").removesuffix("/__main__") for c in COMMANDS}
    found = set()
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("tests/", ".")) or "__name__" not in path.read_text(encoding="utf-8"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body):
            found.add(rel)
    module_of = {rel: rel.removesuffix(".py").removesuffix("/__main__") for rel in found}
    skipped = NOT_WALKED
    unwalked = sorted(rel for rel, module in module_of.items()
                      if module not in walked and rel not in skipped and NOT_WALKED_FOLDER not in rel)
    assert not unwalked, f"commands the convention test does not walk: {unwalked}"
    assert found >= NOT_WALKED, f"gone, drop them from NOT_WALKED: {sorted(NOT_WALKED - found)}"


def test_version_is_setup_cfgs_and_the_changelogs_latest_entry() -> None:
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    assert __version__ == setup["metadata"]["version"] == changelog_version()


def test_every_command_prints_the_version(helps: list[tuple[Command, tuple[str, ...], Help]]) -> None:
    for command, sub, parsed in helps:
        check_version(command, sub, parsed)


def test_every_subcommand_has_its_own_help(helps: list[tuple[Command, tuple[str, ...], Help]]) -> None:
    for _, _, parsed in helps:
        check_own_help(parsed)
    local = {sub: parsed for command, sub, parsed in helps if command.name == "infra.local"}
    assert "--kafka-port" in local[("up",)].options and "--kafka-port" not in local[("down",)].options


def test_defaults_are_shown(helps: list[tuple[Command, tuple[str, ...], Help]]) -> None:
    for _, _, parsed in helps:
        check_defaults_shown(parsed)


def test_bad_values_exit_2_with_one_line_naming_the_command_and_the_flag(
    helps: list[tuple[Command, tuple[str, ...], Help]],
) -> None:
    checked = 0
    for command, sub, parsed in helps:
        check_bad_values(command, sub, parsed)
        checked += sum(o.metavar in (DURATION, PORT, COUNT) for o in parsed.options.values())
    assert checked >= 30  # the walk reached the typed flags (durations, ports, counts)


def test_one_spelling_per_flag_and_one_meaning(helps: list[tuple[Command, tuple[str, ...], Help]]) -> None:
    for _, _, parsed in helps:
        check_spellings(parsed)
    check_same_meaning(helps)
    flags = {flag for _, _, parsed in helps for flag in parsed.options}
    assert {"--impressions-topic", "--feature-snapshots-topic", "--labels-topic", "--metrics-port", "--json",
            "--exit-when-idle", "--start-wait", "--bootstrap-servers", "--redis-url", "--config"} <= flags


@pytest.mark.parametrize(
    ("module", "argv", "dest", "value"),
    [
        ("jobs.generate", ["--topic-impressions", "I"], "impressions_topic", "I"),
        ("jobs.generate", ["--summary"], "json", True),
        ("jobs.sample_join", ["replay", "--events", "e", "--out", "o", "--json-summary"], "json", True),
        ("jobs.sample_join", ["run", "--snapshots-topic", "F"], "snapshots_topic", "F"),
    ],
)
def test_old_spellings_still_work_and_warn_once(
    module: str, argv: list[str], dest: str, value: object, capsys: pytest.CaptureFixture[str]
) -> None:
    old = next(a for a in argv if a in OLD_SPELLINGS)
    args = importlib.import_module(module).build_parser().parse_args(argv + argv[argv.index(old):])  # twice
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith(f": warning: {old} is deprecated; use {OLD_SPELLINGS[old]}"), err


def test_the_demos_minutes_are_its_duration() -> None:
    code, _, err = run_main("infra.demo.__main__", ["--minutes", "0"])
    assert code == 2 and err.splitlines() == [
        "python -m infra.demo: warning: --minutes is deprecated; use --duration",
        "python -m infra.demo: error: --duration: the demo needs a positive number of minutes, got 0.0",
    ]


@pytest.mark.parametrize(
    ("command", "sub", "flag", "model", "path"),
    [
        ("trainer", ("fit",), "--epochs", "trainer.config.FitConfig", "epochs"),
        ("trainer", ("fit",), "--batch-size", "trainer.config.FitConfig", "batch_size"),
        ("trainer", ("fit",), "--loss", "trainer.config.LossConfig", "name"),
        ("trainer", ("run",), "--export-interval", "trainer.config.SidecarConfig", "export_interval"),
        ("trainer", ("run",), "--metrics-port", "trainer.config.SidecarConfig", "metrics_port"),
        ("trainer", ("run",), "--start-wait", "trainer.config.SidecarConfig", "start_wait"),
        ("jobs.sample_join", ("run",), "--window", "jobs.config.TaskConfig", "window"),
        ("jobs.sample_join", ("run",), "--horizon", "jobs.config.TaskConfig", "horizon"),
        ("jobs.sample_join", ("run",), "--start-wait", "jobs.config.LocalRuntimeConfig", "start_wait"),
        ("jobs.sample_join", ("run",), "--group-id", "jobs.config.KafkaConfig", "group_id"),
        ("jobs.sample_join", ("replay",), "--out-of-orderness", "jobs.config.JoinConfig", "out_of_orderness"),
        ("jobs.generate", (), "--window", "jobs.synthetic.GeneratorConfig", "window_ms"),
        ("jobs.generate", (), "--impressions", "jobs.synthetic.GeneratorConfig", "impressions"),
        ("jobs.generate", (), "--labels-topic", "jobs.config.TopicsConfig", "labels"),
    ],
)
def test_the_defaults_shown_are_the_config_models(
    command: str, sub: tuple[str, ...], flag: str, model: str, path: str,
    helps: list[tuple[Command, tuple[str, ...], Help]],
) -> None:
    from common.cli import default_of, format_default

    module, _, name = model.rpartition(".")
    value, is_duration = default_of(getattr(importlib.import_module(module), name), path)
    parsed = next(p for c, s, p in helps if (c.name, s) == (command, sub))
    assert f"(default: {format_default(value, is_duration)})" in parsed.options[flag].help


def test_metrics_port_0_means_any_free_port_in_both_halves(helps: list[tuple[Command, tuple[str, ...], Help]]) -> None:
    shown = [p.options["--metrics-port"].help for _, _, p in helps if "--metrics-port" in p.options]
    assert len(shown) == 2 and all("0: any free port" in text for text in shown)


@pytest.mark.parametrize(
    ("command", "argv", "config", "key"),
    [
        (COMMANDS[0], ["run", "--config", "{config}"], "join:\n  tasks:\n    - name: click\n      window: 10\n",
         "join.tasks.0.window"),
        (COMMANDS[4], ["up", "--state-dir", "{tmp}", "--topics", "{config}"],
         "defaults:\n  retention: 10\ntopics: {}\n", "defaults.retention"),
    ],
)
def test_a_bad_config_exits_2_with_one_line_naming_the_command_and_the_key(
    command: Command, argv: list[str], config: str, key: str, tmp_path: Path
) -> None:
    """A duration written as a bare number in a config file is refused as on the command line."""
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    code, out, err = run_main(command.module, [a.format(config=path, tmp=tmp_path / "state") for a in argv])
    prog = command.prog((argv[0],))
    assert (code, out) == (2, "")
    unitless = f"{DURATION_EXPECTED}, got 10 (a bare number has no unit)"
    assert err == f"{prog}: error: invalid config {path}: {key}: {unitless}\n"


def check_bench_parser(module: str) -> None:
    """A benchmark's parser is the project's (common.cli.Parser): ``--version``, one-line errors, exit 2."""
    code, out, _ = run_main(module, ["--version"])
    assert code == 0 and out.startswith(f"python -m {module} (odl-loop) "), out
    code, _, err = run_main(module, ["--no-such-flag"])
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"python -m {module}: error:"), err


@pytest.mark.parametrize("module", ["jobs.bench.flink_sql", "jobs.bench.kafka", "jobs.bench.replay"])
def test_the_join_benchmarks_parse_as_every_command_does(module: str) -> None:
    check_bench_parser(module)

