"""The command-line conventions every ``python -m`` command of the project follows (docs/cli.md).

- :class:`Parser`: errors are one line, ``<command>: error: --flag: what was wrong``, exit status 2;
  ``--version`` on every command and subcommand; each subcommand has its own ``--help``.
- Argument types: :func:`duration` (a number and its unit: a bare number is refused), :func:`port`
  (0: any free port, the bound one is logged), :func:`positive_int`, :func:`non_negative_int`.
- Defaults in ``--help``: :func:`config_default` reads them from the config models, so the help never
  restates a default by hand; a flag's own argparse default is shown by the help formatter.
- :func:`deprecated_alias`: an old spelling keeps working, hidden from ``--help``, with one warning.
- Exit statuses: :data:`EXIT_OK` 0, :data:`EXIT_FAILED` 1 (the run failed), :data:`EXIT_USAGE` 2 (bad
  arguments, a bad config, an input that cannot be read); :func:`fail` prints the one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from pydantic import BaseModel

from common.config import DURATION_VALIDATOR, format_duration_ms, parse_duration_ms
from common.errors import CommonError
from common.version import DISTRIBUTION, __version__

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed: a service unreachable, a write failed, a check failed
EXIT_USAGE = 2  # bad arguments, a bad config, an input that cannot be read


class UsageError(CommonError):
    """Arguments that parse but do not make sense together, found after parsing: exit status 2."""


def version_line(prog: str) -> str:
    """What ``--version`` prints: the command, the distribution and its version."""
    return f"{prog} ({DISTRIBUTION}) {__version__}"


_ARGUMENT = re.compile(r"^argument (?P<flag>[^\s:/]+)(?:/[^\s:]+)*: ")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, wider, showing a flag's own default unless its help already says one."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=110)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """Wrapped at spaces only: a flag's name (``--schema-registry-url``) is never cut at a hyphen."""
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "(default" in text or default in (None, argparse.SUPPRESS) or isinstance(default, bool):
            return text
        if not action.option_strings or action.nargs == 0:
            return text
        shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class Parser(argparse.ArgumentParser):
    """The project's argument parser: one-line errors naming the command and the flag (exit 2) and
    ``--version``; subparsers made through it (``parser_class``) are the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        if self.add_help:  # parents made with add_help=False carry no --version of their own
            self.add_argument(
                "--version", action="version", version=version_line(self.prog), help="print the version and exit"
            )
        self.set_defaults(command_prog=self.prog)

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", Parser)
        return super().add_subparsers(**kwargs)

    def error(self, message: str) -> NoReturn:
        """``<command>: error: --flag: message`` on one line, exit status 2 (no usage dump)."""
        message = _ARGUMENT.sub(r"\g<flag>: ", message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def command_prog(args: argparse.Namespace, fallback: str) -> str:
    """The name of the (sub)command that parsed ``args``, e.g. ``python -m trainer run``."""
    return str(getattr(args, "command_prog", None) or fallback)


def fail(prog: str, problem: BaseException | str, status: int, stream: IO[str] | None = None) -> int:
    """Print ``<prog>: error: <problem>`` as one line on stderr and return ``status``."""
    text = " ".join(str(problem).split()) or type(problem).__name__
    print(f"{prog}: error: {text}", file=stream or sys.stderr)
    return status


# -- argument types ------------------------------------------------------------------------------
def duration(text: str) -> int:
    """A duration with its unit (``10m``, ``30s``, ``250ms``, ``24h``, ``7d``), in milliseconds."""
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_text(text: str) -> str:
    """A duration checked as :func:`duration` but kept as written (to pass on into a child's config)."""
    duration(text)
    return text


def port(text: str) -> int:
    """A TCP port, 0..65535; 0 asks for any free port (the one bound is logged at start)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535 (0: any free port), got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "a non-negative integer")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


# -- defaults in --help ---------------------------------------------------------------------------
def config_default(model: type[Any], path: str, none: str = "none") -> str:
    """``(default: X)`` for the field at dotted ``path`` of a pydantic config model or a dataclass.

    The value is the model's own default (a default factory is called: an address read from the
    environment shows as it is now); a duration shows as ``10m`` (a pydantic ``DurationMs`` field, or
    a dataclass field named ``*_ms``); ``None`` shows as ``none``."""
    value, is_duration = default_of(model, path)
    return f"(default: {format_default(value, is_duration, none)})"


def default_of(model: type[Any], path: str) -> tuple[Any, bool]:
    """The default of the field at dotted ``path`` and whether it is a duration in milliseconds."""
    cls: type[Any] = model
    value: Any = None
    is_duration = False
    for part in path.split("."):
        if dataclasses.is_dataclass(cls):
            field = {f.name: f for f in dataclasses.fields(cls)}[part]
            factory = typing.cast(Callable[[], Any], field.default_factory)
            value = factory() if field.default is dataclasses.MISSING else field.default
            is_duration = part.endswith("_ms")
        elif isinstance(cls, type) and issubclass(cls, BaseModel):
            info = cls.model_fields[part]
            value = info.get_default(call_default_factory=True)
            is_duration = DURATION_VALIDATOR in info.metadata or _holds_duration(info.annotation)
        else:
            raise KeyError(f"{model.__name__}: {path}: {cls.__name__} has no fields")
        cls = type(value)
    return value, is_duration


def _holds_duration(annotation: Any) -> bool:
    """Whether ``annotation`` is, or is a union with, ``DurationMs`` (e.g. ``DurationMs | None``)."""
    if DURATION_VALIDATOR in getattr(annotation, "__metadata__", ()):
        return True
    return any(_holds_duration(arg) for arg in typing.get_args(annotation))


def format_default(value: Any, is_duration: bool = False, none: str = "none") -> str:
    if value is None:
        return none
    if is_duration and isinstance(value, int):
        return format_duration_ms(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_default(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    return _URL_CREDENTIALS.sub(r"\1***@", str(value))


# A default read from the environment (REDIS_URL=redis://:secret@host/0) must not print its password.
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)


# -- deprecated spellings -------------------------------------------------------------------------
class _DeprecatedAlias(argparse.Action):
    """An old spelling of ``target``'s flag: works as it did, warns once (per parser: once per run), and
    is not in --help."""

    def __init__(self, option_strings: Sequence[str], dest: str, target: argparse.Action, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.target = target
        self.warned: set[str] = set()

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        canonical = self.target.option_strings[0]
        if option_string not in self.warned:
            self.warned.add(option_string)
            print(f"{parser.prog}: warning: {option_string} is deprecated; use {canonical}", file=sys.stderr)
        self.target(parser, namespace, values, canonical)


def deprecated_alias(
    container: Any, target: argparse.Action, *aliases: str, convert: Callable[[str], Any] | None = None
) -> argparse.Action:
    """Accept ``aliases`` as old spellings of ``target`` (hidden from --help, one warning each);
    ``convert`` parses the alias's value when its unit differs (e.g. minutes into milliseconds)."""
    action: argparse.Action = container.add_argument(
        *aliases,
        dest=target.dest,
        action=_DeprecatedAlias,
        target=target,
        nargs=target.nargs,
        const=target.const,
        type=convert or target.type,
        choices=target.choices,
        metavar=target.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    return action
