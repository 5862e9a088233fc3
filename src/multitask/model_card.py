"""A model card per registered version: what it is for, its data, training, results per slice,
calibration, the gate's decision, lineage and known limits, as markdown.

`render(facts)` fills templates/model_card.md.j2 from what the registry holds for a version
(`multitask.registry.cards.facts`): its tags, and the run's `metrics.json`, `history.json`,
`config.json` and the snapshot's `profile.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from multitask.calibration import calibration_line
from multitask.config import RunConfig
from multitask.data_profile import FEATURES
from multitask.records import SPLITS
from multitask.slices import SIZES, SLICE_METRICS, cell, in_order, markdown_table, size_of, slice_rows

TEMPLATE = Path(__file__).with_name("templates") / "model_card.md.j2"
LINEAGE_TAGS = ("lineage_fingerprint", "data_fingerprint", "code_fingerprint", "config_fingerprint",
                "prefect_flow_run_id", "tensorflow_version", "keras_version", "python_version")
FEW_TRAINING_IMAGES = 20  # a class with fewer training images is named among the limits
FEW_TEST_IMAGES = 30  # a slice with fewer: its 95% interval is wider than about +-0.1 (named, not judged)
UNCALIBRATED_ECE = 0.05  # above it, uncalibrated scores are named among the limits


def render(facts: dict[str, Any]) -> str:
    """The card's markdown. `facts`: name, version, aliases, created, run_id, tags, config (a
    `RunConfig` dict), image_size, evaluation (`metrics.json`), and history and profile or None."""
    config = recorded_config(facts.get("config"))
    judged_by = config or RunConfig()  # floors and size thresholds: the defaults when not recorded
    evaluation, profile = facts.get("evaluation") or {}, facts.get("profile")
    evaluation = {**evaluation, "slices": in_order(evaluation.get("slices", {}), facts["class_names"])}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["cell"] = cell
    return env.from_string(TEMPLATE.read_text()).render(
        **{key: facts[key] for key in ("name", "version", "aliases", "created", "run_id", "image_size")},
        dataset=config.data.dataset if config else "(not recorded)", class_names=facts["class_names"],
        config=config, profile=profile,
        splits=SPLITS, shown_features=FEATURES, sizes=_sizes(profile, judged_by) if profile else "",
        training=_training(facts.get("history")), metrics=evaluation,
        slice_table=markdown_table(evaluation["slices"]) if evaluation["slices"] else [],
        calibration=evaluation.get("calibration"),
        calibration_text=calibration_line(evaluation["calibration"]) if evaluation.get("calibration") else "",
        gate=_gate(facts["tags"]), lineage={k: facts["tags"][k] for k in LINEAGE_TAGS if k in facts["tags"]},
        limits=known_limits(evaluation, profile, judged_by),
    )


def recorded_config(raw: dict | None) -> RunConfig | None:
    """The run's `config.json` as today's config: settings removed since are left out; None when
    there is none or it no longer validates (a card then says the training settings are not recorded)."""
    if not raw:
        return None
    sections = {name: type(getattr(RunConfig(), name)).model_fields for name in RunConfig.model_fields}
    known = {section: {key: value for key, value in (raw.get(section) or {}).items() if key in fields}
             for section, fields in sections.items() if section in raw}
    try:
        return RunConfig.model_validate(known)
    except ValueError:
        return None


def _sizes(profile: dict, config: RunConfig) -> str:
    areas = np.asarray(profile["train"]["box_area"])
    names = size_of(areas, config.evaluate.small_area, config.evaluate.large_area)
    return ", ".join(f"{size} {np.mean(names == size):.0%}" for size in SIZES)


def _training(history: dict | list | None) -> dict | None:
    """Epochs run, the best, why it stopped and the minutes; an older history is a plain list of epochs."""
    if not history:
        return None
    rows = history["epochs"] if isinstance(history, dict) else history
    found = history if isinstance(history, dict) else {"epochs_run": len(rows)}
    minutes = sum(row.get("train_seconds", 0.0) for row in rows) / 60
    return {"epochs_run": found.get("epochs_run", len(rows)), "best_epoch": found.get("best_epoch", "not recorded"),
            "stop_reason": found.get("stop_reason", "not recorded"), "minutes": round(minutes, 1)}


def _gate(tags: dict[str, str]) -> dict | None:
    if "gate.decision" not in tags:
        return None
    champion = tags.get("gate.champion_version")
    return {"decision": tags["gate.decision"], "reason": tags.get("gate.reason", ""),
            "against": f"champion v{champion}" if champion else "no champion"}


def known_limits(evaluation: dict, profile: dict | None, config: RunConfig) -> list[str]:
    """Slices below the gate's floors or too small to judge, sizes and classes training barely saw,
    and scores that are not calibrated."""
    floors = {"accuracy": config.gate.min_accuracy, "mean_iou": config.gate.min_mean_iou}
    limits = []
    for row in slice_rows(evaluation.get("slices", {})):
        if row["count"] == 0:
            continue
        if row["count"] < FEW_TEST_IMAGES:
            limits.append(f"{row['slice']}: {row['count']} test images, too few to judge")
            continue
        limits += [f"{row['slice']}: {metric} {row[metric]:.3f} below the floor {floors[metric]}"
                   for metric in SLICE_METRICS.values() if row[metric] < floors[metric]]
    if profile:
        counts = profile["splits"]["train"]["class_counts"]
        limits += [f"class {name}: {count} training images" for name, count in counts.items()
                   if count < FEW_TRAINING_IMAGES]
        tested = {name for name, row in evaluation.get("slices", {}).get("size", {}).items() if row["count"]}
        sizes = set(size_of(np.asarray(profile["train"]["box_area"]), config.evaluate.small_area,
                            config.evaluate.large_area).tolist())
        limits += [f"{size} objects: none in the training data" for size in SIZES
                   if size not in sizes and size in tested]
    calibration = evaluation.get("calibration", {})
    if calibration and "temperature" not in calibration and calibration["ece"] > UNCALIBRATED_ECE:
        limits.append(f"label scores are not calibrated (ECE {calibration['ece']:.3f}): set evaluate.calibrate = true")
    return limits
