"""Small JSON records passed between steps: paths, counts, metrics and content fingerprints.

A record is *intact* when the files it points to still hold the content it was made from;
the orchestrator treats a cached record that is not intact as a miss.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from multitask.fingerprint import digest, hash_file, hash_listing, hash_tree

SPLITS = ("train", "validation", "test")  # every dataset's splits, in this order
# The model's two heads and the test metric that judges each (the gate, the comparison).
HEAD_METRICS = {"label": "accuracy", "box": "mean_iou"}


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    fingerprint: str

    def is_intact(self) -> bool:
        raise NotImplementedError


class TreeRecord(Record):
    """A record whose content is one folder."""

    path: str

    def is_intact(self) -> bool:
        return Path(self.path).is_dir() and hash_tree(Path(self.path)) == self.fingerprint


class DatasetRef(TreeRecord):
    """A prepared TFDS dataset (the builder's versioned data folder)."""

    spec: str
    kind: str  # "shapes" | "folder" | "tfds"
    class_names: list[str]
    splits: dict[str, int]  # examples per split as built (empty where TFDS did not say)

    def is_intact(self) -> bool:
        if self.kind != "tfds":
            return super().is_intact()
        return Path(self.path).is_dir() and hash_listing(Path(self.path)) == self.fingerprint

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


PROFILE_FILE = "profile.json"  # in every snapshot's folder
MODEL_VIEW = "model_view.json"  # logged with every version: the model's view of its test split (`drift`)


class SnapshotRef(TreeRecord):
    """Decoded, resized uint8 images with labels and boxes, one `tf.data` save per split."""

    class_names: list[str]
    splits: dict[str, int]  # examples kept per split
    dropped: dict[str, int] = {}  # examples left out per split (invalid box, several objects)
    image_size: int
    resize: str = "stretch"

    @property
    def profile_path(self) -> Path:
        """`profile.json`: counts, quantiles and per-image features (`multitask.data_profile`)."""
        return Path(self.path) / PROFILE_FILE


class ValidationReport(Record):
    """The outcome of checking a snapshot; its fingerprint is the snapshot's."""

    path: str
    warnings: list[str]
    examples: dict[str, int]

    def is_intact(self) -> bool:
        return Path(self.path).is_file()


class ModelRef(Record):
    """An untrained, compiled-free model saved as `.keras`."""

    path: str
    preset: str
    params: int

    def is_intact(self) -> bool:
        return Path(self.path).is_file() and hash_file(Path(self.path)) == self.fingerprint


class TrainedModelRef(Record):
    """The best model of a training run, its per-epoch history and its run folder."""

    run_dir: str
    model_path: str
    history_path: str
    epochs: int  # epochs run
    best_epoch: int
    stop_reason: str = "max_epochs"  # "max_epochs" | "plateau" | "time_budget"
    train_seconds: float
    images_per_second: float
    temperature: float | None = None  # the label head's, when calibrated (`multitask.calibration`)

    def is_intact(self) -> bool:
        files = [Path(self.model_path), Path(self.history_path)]
        return all(f.is_file() for f in files) and hash_files(files) == self.fingerprint


# The test metrics in every JSON summary (`multitask train --json`, the retrain flow's result).
SUMMARY_METRICS = ("accuracy", "mean_iou", "iou50", "loss", "label_loss", "box_loss")


class EvalReport(Record):
    """Test-split metrics and the files that show them."""

    metrics: dict[str, float]
    per_class_accuracy: dict[str, float | None] = {}  # None: no test image of that class
    slices: dict[str, dict[str, dict]] = {}  # `multitask.slices.slice_metrics`
    calibration: dict[str, float] = {}  # `ece`; `temperature` and `ece_uncalibrated` when calibrated
    metrics_path: str
    curves_path: str | None  # None for a model without training history
    predictions_path: str
    confusion_path: str | None = None
    slices_path: str | None = None
    reliability_path: str | None = None
    model_view_path: str | None = None  # the model's view of its training split (`multitask.drift`)

    @property
    def files(self) -> list[Path]:
        paths = (self.metrics_path, self.curves_path, self.predictions_path, self.confusion_path, self.slices_path,
                 self.reliability_path, self.model_view_path)
        return [Path(p) for p in paths if p]

    def is_intact(self) -> bool:
        return all(f.is_file() for f in self.files) and hash_file(Path(self.metrics_path)) == self.fingerprint


class ComparisonReport(Record):
    """The multi-task vs single-task comparison: summary rows and the report files."""

    rows: list[dict[str, object]]
    json_path: str
    markdown_path: str
    plot_path: str

    @property
    def files(self) -> list[Path]:
        return [Path(p) for p in (self.json_path, self.markdown_path, self.plot_path)]

    def is_intact(self) -> bool:
        return all(f.is_file() for f in self.files) and hash_files(self.files) == self.fingerprint


class ModelVersion(Record):
    """A registered model version in MLflow; `fingerprint` is the trained model's.

    Whether the registry still holds it is asked of the registry, by the cache policy
    (`tasks.caching`): a value object does not reach MLflow.
    """

    name: str
    version: str
    run_id: str
    aliases: list[str]

    def is_intact(self) -> bool:
        return True


def hash_files(files: list[Path]) -> str:
    return digest(*(hash_file(f) for f in files))


class DriftReport(Record):
    """New data against the data a version was trained on (`multitask.drift`)."""

    against: str  # NAME/VERSION
    drift: bool
    drifted: list[str]  # one line per drifted feature
    path: str  # drift.json: every feature's test
    picture_path: str

    def is_intact(self) -> bool:
        return (Path(self.picture_path).is_file() and Path(self.path).is_file()
                and hash_file(Path(self.path)) == self.fingerprint)
