"""Shared configuration plumbing: durations, env-expanding YAML, frozen strict pydantic models.

Every deployable (the sample join, the trainer sidecar, the local stack) has one config model
derived from :class:`StrictConfig` and loads it with :func:`load_config`, so all of them accept the
same duration syntax, expand ``${VAR}`` / ``${VAR:-default}`` the same way and report validation
errors as one :class:`~common.errors.ConfigError` that names the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from common.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration_ms(value: str | int | float) -> int:
    """Parse ``"10m"``, ``"30s"``, ``"250ms"``, ``"24h"``, ``"7d"`` (or a bare number of ms) to ms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '10m' or '500ms', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return int(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as '10m', '30s', '250ms', '24h' or '7d', got {value!r}")
    number, unit = match.groups()
    return int(float(number) * _UNIT_MS[unit or "ms"])


def format_duration_ms(ms: int) -> str:
    """The shortest exact duration string for ``ms`` (inverse of :func:`parse_duration_ms`)."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]
"""A config field holding a duration in milliseconds, written as ``"10m"`` etc. in YAML."""


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
    return validate_config(apply_overrides(data, overrides or {}), model, source=str(file))


def validate_config(data: dict[str, Any], model: type[M], source: str = "<arguments>") -> M:
    """Validate ``data`` into ``model``; errors become one ConfigError naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid config {source}: {problems}") from exc


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
