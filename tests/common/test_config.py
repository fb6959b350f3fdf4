"""Durations, env expansion, overrides and the one-error-naming-the-file rule of common.config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import (
    DurationMs,
    StrictConfig,
    apply_overrides,
    expand_env,
    format_duration_ms,
    load_config,
    parse_duration_ms,
)
from common.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("30s", 30_000), ("10m", 600_000), ("24h", 86_400_000), ("7d", 604_800_000),
     ("1.5s", 1_500), (" 5 s ", 5_000), ("0ms", 0), (0, 0), (1200, 1200)],
)
def test_parse_duration(text: str | int, ms: int) -> None:
    assert parse_duration_ms(text) == ms  # numbers from code are milliseconds, text carries its unit


# "42" was 42 ms until the command-line conventions (issue #28): text without a unit is refused
@pytest.mark.parametrize("bad", ["", "42", "0", "ten minutes", "5w", "-3s", "1e3", True, -5])
def test_parse_duration_rejects_with_what_was_received(bad: object) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        parse_duration_ms(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**12))
def test_format_then_parse_is_identity(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms


def test_expand_env_with_defaults_and_missing() -> None:
    env = {"HOST": "kafka:9092"}
    assert expand_env("a: ${HOST}\nb: ${PORT:-6379}\nc: ${EMPTY:-}", env) == "a: kafka:9092\nb: 6379\nc: "
    with pytest.raises(ConfigError, match="PORT is not set"):
        expand_env("${PORT}", env)


def test_apply_overrides_is_a_copy_and_skips_none() -> None:
    data = {"kafka": {"group_id": "g", "topics": {"labels": "l"}}}
    result = apply_overrides(data, {"kafka.group_id": "h", "kafka.topics.labels": None, "redis.url": "r"})
    assert result == {"kafka": {"group_id": "h", "topics": {"labels": "l"}}, "redis": {"url": "r"}}
    assert data["kafka"]["group_id"] == "g"


class _Sample(StrictConfig):
    window: DurationMs = 1000
    name: str = "x"


def test_load_config_expands_env_and_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINDOW", "2m")
    file = tmp_path / "c.yaml"
    file.write_text("window: ${WINDOW}\n")
    config = load_config(file, _Sample, {"name": "y"})
    assert (config.window, config.name) == (120_000, "y")
    with pytest.raises(Exception, match="frozen"):
        config.window = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "message"),
    [("windw: 5s\n", r"c\.yaml: windw: Extra inputs are not permitted"),
     ("window: soon\n", r"c\.yaml: window: Value error, expected a duration"),
     ("window: 10\n", r"c\.yaml: window: expected a duration with a unit .*, got 10 \(a bare number has no unit\)"),
     ("window: '10'\n", r"c\.yaml: window: Value error, expected a duration with a unit .*, got '10'"),
     ("window: [\n", r"c\.yaml is not valid YAML"),
     ("- 1\n", r"c\.yaml must hold a mapping")],
)
def test_load_config_errors_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(file, _Sample)


def test_a_bare_number_in_a_file_is_refused_but_overrides_and_code_give_milliseconds(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("name: y\n")
    assert load_config(file, _Sample, {"window": 2_500}).window == 2_500  # a flag's value, parsed to ms
    assert _Sample(window=300).window == 300
    assert _Sample.model_validate({"window": 300}).window == 300


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml", _Sample)
