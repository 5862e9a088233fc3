"""Cache keys of steps: the step's name, the library's source and each input's fingerprint.

A record carries the content hash of what it names. A config section is its settings, and for
the two that name something on disk, that content too: `data` a folder dataset's files, `model`
a weights file, so data or weights replaced in place are a miss.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from multitask.config import DataConfig, ModelConfig
from multitask.datasets.spec import source_fingerprint
from multitask.fingerprint import digest, hash_file, library_fingerprint


def data_fingerprint(cfg: DataConfig) -> str:
    """The settings plus the content of the data they name, so an edited image is a miss."""
    return digest("DataConfig", cfg.model_dump_json(), source_fingerprint(cfg.dataset))


def model_fingerprint(cfg: ModelConfig) -> str:
    """The settings plus the content of a weights file, so a file replaced in place is a miss."""
    path = Path(cfg.weights).expanduser()
    weights = hash_file(path) if cfg.weights not in ("imagenet", "none") and path.is_file() else ""
    return digest("ModelConfig", cfg.model_dump_json(), weights)


def of_value(value: Any) -> str:
    """Fingerprint of one step input: a record's content hash, or a config section's."""
    if isinstance(value, DataConfig):
        return data_fingerprint(value)
    if isinstance(value, ModelConfig):
        return model_fingerprint(value)
    fingerprint = getattr(value, "fingerprint", None)
    if isinstance(fingerprint, str):
        return fingerprint
    if isinstance(value, BaseModel):
        return digest(type(value).__name__, value.model_dump_json())
    return digest(json.dumps(value, sort_keys=True, default=str))


def step_key(step: str, inputs: dict[str, Any]) -> str:
    """Cache key of a step: its name, the library source, and each input's fingerprint."""
    parts = [f"{name}={of_value(value)}" for name, value in sorted(inputs.items())]
    return digest(step, library_fingerprint(), *parts)
