"""Dataset spec strings -> prepared TFDS datasets (`DatasetRef`)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from multitask import workspace
from multitask.config import DataConfig
from multitask.datasets.spec import check
from multitask.fingerprint import hash_tree
from multitask.records import DatasetRef


def _shapes_builder(data: DataConfig) -> tfds.core.DatasetBuilder:
    from multitask.datasets import shapes

    return shapes.builder(data.train_size, data.validation_size, data.test_size, data.seed,
                          data_dir=str(workspace.tfds_dir()))


def builder_for(data: DataConfig) -> tfds.core.DatasetBuilder:
    check(data.dataset)  # only `shapes` passes today
    return _shapes_builder(data)


def prepare(data: DataConfig) -> DatasetRef:
    """Build (or reuse) the TFDS records for `data.dataset` in the workspace."""
    builder = builder_for(data)
    tfds.disable_progress_bar()  # per-example bars flood logs; Prefect logs the step instead
    # TFDS writes into an `incomplete` folder and renames it when done, so a killed build
    # never looks prepared.
    builder.download_and_prepare()
    path = builder.data_path
    label = builder.info.features["label"]
    splits = {name: int(split.num_examples) for name, split in builder.info.splits.items()}
    return DatasetRef(
        spec=data.dataset, path=str(path), class_names=list(label.names), splits=splits,
        fingerprint=hash_tree(path),
    )
