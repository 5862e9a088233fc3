"""A tuning search space: config keys with ranges, log ranges, integer ranges or choices.

Written inline, comma-separated (`train.learning_rate=1e-4..3e-3:log, data.image_size=64|96|128`),
or as a TOML file of sections whose values are the same range strings or arrays of choices:

    [train]
    learning_rate = "1e-4..3e-3:log"
    box_loss_weight = "1..20"
    [data]
    image_size = [64, 96, 128]

A range of a whole-number setting (`train.epochs`) is sampled as integers. Every key, end and choice is checked
against the config schema before anything runs, so a bad space is one `ConfigError` line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from multitask.config import RunConfig
from multitask.config_loader import parse_value, read_toml, setting, with_values
from multitask.errors import ConfigError

_RANGE = re.compile(r"^(?P<low>[^.][^:]*?)\.\.(?P<high>[^:]+?)(?::(?P<scale>\w+))?$")


@dataclass(frozen=True)
class Dimension:
    """One searched key: `low`..`high` (`log`: sampled on a log scale), or one of `choices`."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial (the parameter is named by the key)."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def extremes(self) -> tuple[Any, ...]:
        """The values that must all be valid settings: both ends, or every choice."""
        return self.choices or (self.low, self.high)


def parse(space: str, base: RunConfig) -> list[Dimension]:
    """`space` (inline, or the path of a `.toml` file) as dimensions, each checked against `base`."""
    items = _file_items(Path(space.strip())) if space.strip().endswith(".toml") else _inline_items(space)
    if not items:
        raise ConfigError(f"the search space {space!r} names no setting")
    dimensions = [_dimension(key, value) for key, value in items]
    keys = [d.key for d in dimensions]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"the search space names a setting twice: {', '.join(sorted(keys))}")
    for dimension in dimensions:
        for value in dimension.extremes():
            try:
                with_values(base, {dimension.key: value})
            except ConfigError as exc:
                raise ConfigError(f"search space {dimension.key}: {value!r} is not a valid value ({exc})") from exc
    return dimensions


def _inline_items(space: str) -> list[tuple[str, Any]]:
    items = []
    for part in filter(None, (p.strip() for p in space.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ConfigError(f"search space item {part!r}: expected section.key=LOW..HIGH[:log] or section.key=A|B")
        items.append((key.strip(), value.strip()))
    return items


def _file_items(path: Path) -> list[tuple[str, Any]]:
    tree = read_toml(path, "search space file")
    items = []
    for section, table in tree.items():
        if not isinstance(table, dict):
            raise ConfigError(f"search space file {path}: {section!r} is not a [section] of settings")
        items += [(f"{section}.{key}", value) for key, value in table.items()]
    return items


def _dimension(key: str, value: Any) -> Dimension:
    section, name = setting(key, "the search space")
    if isinstance(value, list):
        return _choices(key, tuple(value))
    if not isinstance(value, str):
        raise ConfigError(f"search space {key}: expected a range string or a list of choices, got {value!r}")
    if "|" in value:
        return _choices(key, tuple(parse_value(v.strip()) for v in value.split("|")))
    match = _RANGE.match(value)
    if not match:
        raise ConfigError(f"search space {key}: {value!r} is neither LOW..HIGH[:log] nor A|B|...")
    low, high, scale = parse_value(match["low"].strip()), parse_value(match["high"].strip()), match["scale"]
    if scale not in (None, "log"):
        raise ConfigError(f"search space {key}: unknown scale {scale!r} (known: log)")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise ConfigError(f"search space {key}: the ends of {value!r} must be finite numbers")
    if _annotation(section, name) is bool:
        raise ConfigError(f"search space {key}: a yes/no setting takes choices (true|false), not a range")
    if not low < high:
        raise ConfigError(f"search space {key}: the range {value!r} is empty (its low end must be below its high end)")
    if scale == "log" and low <= 0:
        raise ConfigError(f"search space {key}: a log range needs a low end above 0, got {value!r}")
    return Dimension(key, low=low, high=high, log=scale == "log", integer=_is_integer(section, name))


def _choices(key: str, choices: tuple[Any, ...]) -> Dimension:
    if len(choices) < 2 or len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"search space {key}: choices need at least two different values, got {list(choices)}")
    return Dimension(key, choices=choices)


def _is_integer(section: str, key: str) -> bool:
    """Whether the setting holds whole numbers (`int` or `int | None`): its range is sampled as integers."""
    annotation = _annotation(section, key)
    return annotation is int or set(get_args(annotation)) == {int, type(None)}


def _annotation(section: str, key: str) -> Any:
    return RunConfig.model_fields[section].annotation.model_fields[key].annotation  # type: ignore[union-attr]
