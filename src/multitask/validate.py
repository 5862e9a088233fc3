"""validate(): check a snapshot before training and write a report; fail on bad data.

Errors (training would be wrong): an empty split, a label outside the class list, a box that
is not 0 <= min < max <= 1. Warnings (worth a look): a class missing from a split, examples
dropped while building the snapshot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multitask import atomic
from multitask.errors import DataError
from multitask.pipeline import load_split
from multitask.records import SPLITS, SnapshotRef, ValidationReport

_FIRST = 5  # offending examples quoted per problem


def _describe(split: str, index: int, example: dict, problem: str) -> str:
    name = example["filename"].decode() if example["filename"] else f"#{index}"
    return f"{split} {name}: {problem}"


def _check_split(snapshot: SnapshotRef, split: str) -> dict:
    """Counts, class histogram, pixel statistics and the first offending examples of one split."""
    num_classes = len(snapshot.class_names)
    classes = np.zeros(num_classes, dtype=int)
    bad_labels, bad_boxes = [], []
    pixel_sum, pixel_sq, pixels, count = np.zeros(3), np.zeros(3), 0, 0
    for index, example in enumerate(load_split(snapshot, split).as_numpy_iterator()):
        count += 1
        label, box = int(example["label"]), example["box"]
        if 0 <= label < num_classes:
            classes[label] += 1
        else:
            bad_labels.append(_describe(split, index, example, f"label {label} outside 0..{num_classes - 1}"))
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        if not (0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1):
            bad_boxes.append(_describe(split, index, example, f"box {[round(float(v), 4) for v in box]}"))
        image = example["image"].reshape(-1, 3).astype(np.float64) / 255.0
        pixel_sum += image.sum(axis=0)
        pixel_sq += (image**2).sum(axis=0)
        pixels += image.shape[0]
    mean = pixel_sum / max(pixels, 1)
    std = np.sqrt(np.maximum(pixel_sq / max(pixels, 1) - mean**2, 0))
    return {"examples": count, "class_counts": dict(zip(snapshot.class_names, classes.tolist())),
            "bad_labels": bad_labels, "bad_boxes": bad_boxes,
            "pixel_mean": mean.round(4).tolist(), "pixel_std": std.round(4).tolist()}


def _problems(splits: dict[str, dict]) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for split, stats in splits.items():
        if stats["examples"] == 0:
            errors.append(f"split {split} is empty")
        for kind in ("bad_labels", "bad_boxes"):
            if stats[kind]:
                what = "labels out of range" if kind == "bad_labels" else "invalid boxes"
                errors.append(f"{len(stats[kind])} {what} in {split}, first: {'; '.join(stats[kind][:_FIRST])}")
        missing = [name for name, n in stats["class_counts"].items() if n == 0]
        if missing and stats["examples"]:
            warnings.append(f"{len(missing)} class(es) missing from {split}: {', '.join(missing[:10])}")
    return errors, warnings


def validate(snapshot: SnapshotRef, out_dir: Path) -> ValidationReport:
    """Write `validation.json`; raise `DataError` with counts and first offenders when bad."""
    splits = {split: _check_split(snapshot, split) for split in SPLITS}
    errors, warnings = _problems(splits)
    warnings += [f"{n} example(s) dropped from {split} (no valid box, or several objects)"
                 for split, n in snapshot.dropped.items() if n]
    report = {"ok": not errors, "errors": errors, "warnings": warnings,
              "classes": snapshot.class_names, "splits": splits}
    path = atomic.write_json(out_dir / "validation.json", report)
    if errors:
        raise DataError(f"dataset validation failed ({path}): " + " | ".join(errors))
    return ValidationReport(path=str(path), warnings=warnings,
                            examples={s: splits[s]["examples"] for s in SPLITS},
                            fingerprint=snapshot.fingerprint)
