"""Does new data look like the data a version was trained on? One test per feature, one verdict.

The features are the data profile's (`multitask.data_profile`: image size, aspect, brightness,
contrast, colour; box centre, size, aspect, area) and the class frequencies, of every split of the
new data against the training split, and the model's own view: its penultimate features, reduced
to their `COMPONENTS` main directions, of the new data's test split against the test split the
version was evaluated on (`reference_view`, stored with the version). Held-out images on both
sides: a model sees the images it learnt from differently, so a training split against new images
would move its view even when nothing else did. Each numeric feature gets SciPy's two-sample
Kolmogorov-Smirnov test; the classes a chi-square test of the
counts, with the total variation distance as their effect size. A feature has drifted when its
test rejects at `ALPHA` shared over all the tests (Bonferroni) *and* the effect is at least
`MIN_EFFECT`: on thousands of images a test finds differences too small to matter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from multitask import atomic, workspace
from multitask.calibration import label_head_input
from multitask.data_profile import FEATURES, KEPT, features
from multitask.errors import UserError
from multitask.fingerprint import hash_file
from multitask.records import MODEL_VIEW, PROFILE_FILE, SPLITS, DriftReport, SnapshotRef

ALPHA = 0.01
MIN_EFFECT = 0.1  # KS statistic or total variation distance
COMPONENTS = 4


def reference_view(features: np.ndarray) -> dict[str, list]:
    """The main directions of a split's penultimate features, and the coordinates on them of at
    most `KEPT` of its images (evenly spaced)."""
    mean = features.mean(axis=0)
    _, _, rows = np.linalg.svd(features - mean, full_matrices=False)
    components = rows[:COMPONENTS]
    kept = features[np.linspace(0, len(features) - 1, min(len(features), KEPT)).round().astype(int)]
    return {"mean": mean.round(6).tolist(), "components": components.round(6).tolist(),
            "train": ((kept - mean) @ components.T).round(5).tolist()}


def project(view: dict[str, list], features: np.ndarray) -> np.ndarray:
    return (features - np.asarray(view["mean"])) @ np.asarray(view["components"]).T


def _components(coordinates: np.ndarray) -> dict[str, np.ndarray]:
    """`model_1`, `model_2`, ...: the model's view, one feature per main direction."""
    return {f"model_{i + 1}": column for i, column in enumerate(coordinates.T)}


def _row(feature: str, statistic: float, p_value: float, tests: int) -> dict[str, Any]:
    drifted = bool(p_value < ALPHA / tests and statistic >= MIN_EFFECT)
    return {"feature": feature, "statistic": round(float(statistic), 4), "p_value": float(f"{p_value:.3g}"),
            "drifted": drifted}


def _classes(reference: list[int], new: list[int], reference_names: list[str], new_names: list[str],
             tests: int) -> dict[str, Any]:
    """Class counts by name (a class only one side has counts 0 on the other)."""
    from scipy.stats import chi2_contingency

    names = sorted(set(reference_names) | set(new_names))
    table = np.zeros((2, len(names)))
    for row, (labels, label_names) in enumerate(((reference, reference_names), (new, new_names))):
        counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(label_names))
        for label_name, count in zip(label_names, counts):
            table[row, names.index(label_name)] += count
    shares = table / table.sum(axis=1, keepdims=True)
    seen = table.sum(axis=0) > 0
    p_value = chi2_contingency(table[:, seen])[1] if seen.sum() > 1 else 1.0
    return _row("classes", 0.5 * np.abs(shares[0] - shares[1]).sum(), p_value, tests)


def compare(reference: dict[str, list], new: dict[str, np.ndarray], class_names: list[str],
            new_class_names: list[str], reference_model: np.ndarray | None = None,
            new_model: np.ndarray | None = None) -> dict[str, Any]:
    """`{"drift": bool, "features": [{"feature", "statistic", "p_value", "drifted"}, ...]}`.

    `reference` and `new` hold each feature's values (and `label`); `*_model` the model's view
    (`project`ed), one column per component."""
    from scipy.stats import ks_2samp

    columns = {name: (np.asarray(reference[name]), np.asarray(new[name])) for name in FEATURES}
    if reference_model is not None and new_model is not None:
        theirs = _components(new_model)
        columns |= {name: (column, theirs[name]) for name, column in _components(reference_model).items()}
    tests = len(columns) + 1
    rows = [_classes(reference["label"], list(new["label"]), class_names, new_class_names, tests)]
    for name, (old, now) in columns.items():
        found = ks_2samp(old, now)
        rows.append(_row(name, found.statistic, found.pvalue, tests))
    return {"drift": any(row["drifted"] for row in rows), "alpha": ALPHA, "min_effect": MIN_EFFECT, "features": rows}


def drift_lines(report: dict[str, Any]) -> list[str]:
    """One line per drifted feature: `brightness: KS 0.41 (p 1.2e-30)`."""
    return [f"{row['feature']}: {'distance' if row['feature'] == 'classes' else 'KS'} {row['statistic']:.3f} "
            f"(p {row['p_value']:.2g})" for row in report["features"] if row["drifted"]]


def check(reference: str, snapshot: SnapshotRef, out_dir: Path) -> DriftReport:
    """`snapshot` against the data of the version `reference` names (see the module's docstring):
    `drift.json` (the tests) and `drift.png` (the distributions) in `out_dir`."""
    from multitask import registry
    from multitask.model import load
    from multitask.pipeline import load_split
    from multitask.plots import plot_drift

    version = registry.resolve(reference)
    name = f"{version.name}/{version.version}"
    with workspace.scratch("drift") as tmp:
        profile_path, view_path = (registry.run_file(name, file, tmp) for file in (PROFILE_FILE, MODEL_VIEW))
        if profile_path is None or view_path is None:
            raise UserError(f"{name} was registered without a profile of its training data: train or retrain it "
                            "to check drift against it")
        profile, view = json.loads(profile_path.read_text()), json.loads(view_path.read_text())
        model = load(registry.fetch(name, tmp / "model")[0], compile=False)
        found = [features(load_split(snapshot, split), snapshot.image_size, snapshot.resize) for split in SPLITS]
        new = {key: np.concatenate([part[key] for part in found]) for key in found[0]}
        new_view = project(view, label_head_input(model, load_split(snapshot, "test")))
    report = compare(profile["train"], new, profile["class_names"], snapshot.class_names,
                     np.asarray(view["train"]), new_view)
    path = atomic.write_json(out_dir / "drift.json", {"against": name, **report})
    reference_values = {**profile["train"], **_components(np.asarray(view["train"]))}
    new_values = {**new, **_components(new_view)}
    picture = plot_drift(reference_values, new_values, report["features"], out_dir / "drift.png")
    return DriftReport(against=name, drift=report["drift"], drifted=drift_lines(report), path=str(path),
                       picture_path=str(picture), fingerprint=hash_file(path))
