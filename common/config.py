"""Shared configuration plumbing: durations, env-expanding YAML, frozen strict pydantic models.

Every deployable (the sample join, the trainer sidecar, the local stack) has one config model
derived from :class:`StrictConfig` and loads it with :func:`load_config`, so all of them accept the
same duration syntax (a number and its unit: a bare number is refused in a file and on a command
line), expand ``${VAR}`` / ``${VAR:-default}`` the same way and report validation errors as one
:class:`~common.errors.ConfigError` that names the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from common.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


DURATION_EXPECTED = "expected a duration with a unit (ms, s, m, h, d) such as '10m', '30s' or '250ms'"


def parse_duration_ms(value: str | int | float) -> int:
    """Parse ``"10m"``, ``"30s"``, ``"250ms"``, ``"24h"``, ``"7d"`` to ms.

    Text needs its unit: a bare ``"10"`` is refused (ten what?). A number given by code (an int or a
    float) is taken as milliseconds, which is what the config models hold."""
    if isinstance(value, bool):
        raise ValueError(f"{DURATION_EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return int(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{DURATION_EXPECTED}, got {value!r}")
    number, unit = match.groups()
    return int(float(number) * _UNIT_MS[unit])


def format_duration_ms(ms: int) -> str:
    """The shortest exact duration string for ``ms`` (inverse of :func:`parse_duration_ms`)."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


# Set in the validation context while a config file's own values are checked (load_config).
_FROM_FILE = "odl_config_from_file"
UNITLESS_DURATION = "duration_without_unit"


def _duration_field(value: Any, info: ValidationInfo) -> int:
    """A duration field's value: text with a unit; a number only from code, never from a file."""
    from_file = bool(info.context and info.context.get(_FROM_FILE))
    if from_file and isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError(
            UNITLESS_DURATION, "{expected}, got {value} (a bare number has no unit)",
            {"expected": DURATION_EXPECTED, "value": repr(value)},
        )
    return parse_duration_ms(value)


DURATION_VALIDATOR = BeforeValidator(_duration_field)
DurationMs = Annotated[int, DURATION_VALIDATOR]
"""A config field holding a duration in milliseconds, written as ``"10m"`` etc. in YAML (a unit is
required there); code may give it an int of milliseconds."""


class StrictConfig(BaseModel):
    """Base of every config model: immutable, and unknown keys are an error (typos fail loudly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset variable without a default is an error."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set and has no default (write ${{{name}:-value}})")

    return _ENV.sub(substitute, text)


M = TypeVar("M", bound=BaseModel)


def load_config(path: str | os.PathLike[str], model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Load YAML at ``path`` (env-expanded), apply dotted ``overrides`` and validate into ``model``.

    Any failure (missing file, bad YAML, validation) becomes one ConfigError naming the file.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(expand_env(text)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping at the top level, got {type(data).__name__}")
    _refuse_unitless_durations(data, model, str(file))
    return validate_config(apply_overrides(data, overrides or {}), model, source=str(file))


def _refuse_unitless_durations(data: dict[str, Any], model: type[BaseModel], source: str) -> None:
    """A duration written in the file as a bare number (``window: 10``) is an error naming the key.

    Checked on the file's own values, before the command line's overrides (which arrive as
    milliseconds) are merged in; every other problem is left to the validation that follows."""
    try:
        model.model_validate(data, context={_FROM_FILE: True})
    except ValidationError as exc:
        unitless = [err for err in exc.errors() if err["type"] == UNITLESS_DURATION]
        if unitless:
            raise ConfigError(f"invalid config {source}: {_problems(unitless)}") from None


def validate_config(data: dict[str, Any], model: type[M], source: str = "<arguments>") -> M:
    """Validate ``data`` into ``model``; errors become one ConfigError naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {source}: {_problems(exc.errors())}") from exc


def _problems(errors: Any) -> str:
    """Pydantic's errors as ``a.b: message; c: message``."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in errors)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``{"a.b": v}`` overrides applied (``None`` values are skipped)."""
    result: dict[str, Any] = {**data}
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = result
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    return result
