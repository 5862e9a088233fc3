"""Lineage: what a registered model was made from, as tags, and which settings differ."""

from __future__ import annotations

from multitask.config import RunConfig
from multitask.fingerprint import digest, library_fingerprint
from multitask.records import DatasetRef, ModelVersion
from multitask.registry.store import client
from multitask.step_keys import of_value

LINEAGE_TAG = "lineage_fingerprint"
# What makes a model; the other sections (evaluate, registry, gate) only judge or name it.
LINEAGE_SECTIONS = ("data", "model", "train")
_SECTION_TAG = "config.{}_fingerprint"
_DATA_TAG = "data_fingerprint"


def lineage_tags(dataset: DatasetRef, config: RunConfig) -> dict[str, str]:
    """What a model was made from: data, config and code fingerprints.

    `lineage_fingerprint` covers what makes the model (the data's content, the data, model and
    train sections, the library's code); one tag per config section says which settings differ
    when the lineage is the same.
    """
    code = library_fingerprint()
    sections = {name: of_value(getattr(config, name)) for name in type(config).model_fields}
    sections["data"] = _data_settings(config)  # the data's content is below
    calibrated = ["calibrated"] if config.evaluate.calibrate else []  # the registered model's scores differ
    lineage = digest(dataset.fingerprint, code, *(sections[name] for name in LINEAGE_SECTIONS), *calibrated)
    return {LINEAGE_TAG: lineage, _DATA_TAG: dataset.fingerprint,
            "config_fingerprint": of_value(config), "code_fingerprint": code,
            **{_SECTION_TAG.format(name): value for name, value in sections.items()}}


def _data_settings(config: RunConfig) -> str:
    return digest("DataConfig", config.data.model_dump_json())


def same_data(version: ModelVersion, dataset: DatasetRef, config: RunConfig) -> bool:
    """Whether the version was trained on this data's content with these data settings: the same
    snapshot, so its data cannot have moved."""
    found = client().get_model_version(version.name, version.version).tags
    return (found.get(_DATA_TAG) == dataset.fingerprint
            and found.get(_SECTION_TAG.format("data")) == _data_settings(config))


def changed_sections(version: ModelVersion, tags: dict[str, str]) -> list[str]:
    """Config sections whose fingerprint differs between a registered version and `tags`."""
    found = client().get_model_version(version.name, version.version).tags
    return sorted(name for name in RunConfig.model_fields
                  if found.get(_SECTION_TAG.format(name)) != tags[_SECTION_TAG.format(name)])
