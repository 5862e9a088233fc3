"""What the registry records on a model version, shared by `peek` (which reads it without MLflow)
and the modules that use MLflow: the tag naming the trained model, and a version's tags and aliases."""

from __future__ import annotations

from dataclasses import dataclass, field

TRAIN_FINGERPRINT_TAG = "multitask.train_fingerprint"
REREGISTERED_FROM = "multitask.reregistered_from"  # on a version registered again: the old version


@dataclass(frozen=True)
class Found:
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
