"""A `RunConfig` from a preset, a TOML file, `--set` items and explicit overrides, in that order,
with one-line errors (`ConfigError`) for anything the schema (`multitask.config`) refuses."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from multitask.config import PRESET_IMAGE_SIZES, RunConfig, default_model_name
from multitask.errors import ConfigError

# Overrides on top of the field defaults. `seed` reproduces the starting point: its model,
# Adam(1e-3) at a constant rate, categorical + binary cross-entropy with equal weights,
# 10 epochs of batch 32, no augmentation, float32.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "model": {"preset": "seed", "precision": "float32"},
        "train": {"box_loss": "bce", "box_loss_weight": 1.0, "augment_flip": False, "augment_scale": 0.0,
                  "augment_shift": 0.0, "augment_colour": 0.0, "early_stopping_patience": None, "epochs": 10,
                  "lr_schedule": "constant", "weighting": "fixed"},
    },
    "default": {},
}


def _merge(base: dict[str, Any], override: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """`--set` values are TOML literals (`3`, `0.5`, `true`, `"x"`); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(item: str) -> dict[str, Any]:
    """`train.learning_rate=0.01` -> {"train": {"learning_rate": 0.01}}, checked against the schema."""
    path, sep, raw = item.partition("=")
    if not sep:
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    section, key = setting(path, "--set")
    return {section: {key: parse_value(raw.strip())}}


def setting(path: str, source: str) -> tuple[str, str]:
    """`train.learning_rate` -> ("train", "learning_rate"), or one line naming the known ones."""
    keys = path.strip().split(".")
    if len(keys) != 2 or not all(keys):
        raise ConfigError(f"{source} expects section.key, got {path.strip()!r}")
    section, key = keys
    fields = RunConfig.model_fields
    if section not in fields:
        raise ConfigError(f"unknown config section {section!r} in {source} (known: {', '.join(fields)})")
    known = fields[section].annotation.model_fields  # type: ignore[union-attr]
    if key not in known:
        raise ConfigError(f"unknown setting {path.strip()!r} in {source} (known in {section}: {', '.join(known)})")
    return section, key


def _readable(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid config{' ' + where if where else ''}: {first['msg'].removeprefix('Value error, ')}"


def load_config(
    preset: str = "default",
    config_file: Path | None = None,
    sets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Preset, then the TOML file, then `--set` items, then explicit overrides (CLI flags)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    tree = copy.deepcopy(PRESETS[preset])
    if config_file is not None:
        tree = _merge(tree, read_toml(Path(config_file), "config file"))
    for item in sets or []:
        tree = _merge(tree, parse_set(item))
    return _validated(_merge(tree, overrides or {}))


def with_values(config: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`config` with `{"section.key": value}` set, validated as a whole (one `ConfigError` line).
    What validation derived (`derived`) is derived again: a new model preset brings its image size."""
    tree = config.model_dump(exclude=derived(config))
    for item, value in values.items():
        section, key = item.split(".")
        tree = _merge(tree, {section: {key: value}})
    return _validated(tree)


def _validated(tree: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_readable(exc)) from exc


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables, or one `ConfigError` line naming `what` it was meant to be."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from exc


def derived(config: RunConfig) -> dict[str, set[str]]:
    """The settings of `config` that hold what validation derives from others (`RunConfig`): the
    model name from the dataset, the image size from the model preset."""
    fields: dict[str, set[str]] = {}
    if config.registry.model_name == default_model_name(config.data.dataset):
        fields["registry"] = {"model_name"}
    if config.data.image_size == PRESET_IMAGE_SIZES[config.model.preset]:
        fields["data"] = {"image_size"}
    return fields
