"""Dataset spec strings -> prepared TFDS datasets (`DatasetRef`) and their examples.

Whatever the source, `examples()` yields {"image", "label", "bbox", "filename", "keep"} with
one object per image, so the snapshot and everything after it see one format.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from multitask import workspace
from multitask.config import DataConfig
from multitask.datasets import folder, shapes, tfds_catalog
from multitask.datasets.annotations import read_folder
from multitask.datasets.reachable import TIMEOUT_S, first_urls, unreachable_hosts
from multitask.datasets.spec import Spec, parse
from multitask.errors import DataError
from multitask.fingerprint import hash_listing, hash_tree
from multitask.records import DatasetRef


def tfds_data_dir() -> Path:
    """Where real TFDS datasets live: `$TFDS_DATA_DIR`, else the workspace's `tfds/`."""
    return Path(os.environ.get("TFDS_DATA_DIR") or workspace.tfds_dir())


def _build(builder: tfds.core.DatasetBuilder, regenerate: bool = True) -> None:
    """Prepare; on failure remove TFDS's `incomplete.*` folder so nothing half-built stays.

    Our own builders regenerate on every call: the step only runs on a cache miss, which may
    come from an edit to the generator code, and TFDS alone would reuse the old records.
    """
    tfds.disable_progress_bar()  # per-example bars flood logs; Prefect logs the step instead
    mode = tfds.download.GenerateMode
    config = tfds.download.DownloadConfig(
        download_mode=mode.REUSE_CACHE_IF_EXISTS if regenerate else mode.REUSE_DATASET_IF_EXISTS)
    try:
        builder.download_and_prepare(download_config=config)
    except BaseException:
        for partial in Path(builder.data_dir).parent.glob("incomplete.*"):
            shutil.rmtree(partial, ignore_errors=True)
        raise


def _ref(data: DataConfig, spec: Spec, builder: tfds.core.DatasetBuilder, fingerprint: str) -> DatasetRef:
    label = builder.info.features["label"]
    splits = {name: int(split.num_examples) for name, split in builder.info.splits.items()}
    return DatasetRef(spec=data.dataset, kind=spec.kind, path=str(builder.data_path),
                      class_names=list(label.names), splits=splits, fingerprint=fingerprint)


def _prepare_shapes(data: DataConfig, spec: Spec) -> DatasetRef:
    builder = shapes.builder(data.train_size, data.validation_size, data.test_size, data.seed,
                             data_dir=str(workspace.tfds_dir()))
    _build(builder)
    return _ref(data, spec, builder, hash_tree(builder.data_path))


def _prepare_folder(data: DataConfig, spec: Spec) -> DatasetRef:
    assert spec.path is not None  # a folder spec always has one
    examples, class_names = read_folder(spec.path, data.multi_object or "error", data.max_pixels)
    builder = folder.builder(spec.path, examples, class_names, hash_tree(spec.path),
                             data_dir=str(workspace.tfds_dir()), max_pixels=data.max_pixels)
    _build(builder)
    return _ref(data, spec, builder, hash_tree(builder.data_path))


def _tfds_builder(spec: Spec) -> tfds.core.DatasetBuilder:
    name = f"{spec.name}:{spec.version}" if spec.version else spec.name
    return tfds.builder(name, data_dir=str(tfds_data_dir()))


def _downloads_at_hand() -> bool:
    """Whether TFDS's download folder holds anything (copied in by hand, or left by an earlier
    try): then the build may need no network at all, and only trying tells."""
    folder = tfds_data_dir() / "downloads"
    return folder.is_dir() and any(folder.iterdir())


def _prepare_tfds(data: DataConfig, spec: Spec) -> DatasetRef:
    if data.multi_object == "error":
        raise DataError("data.multi_object = \"error\" is for folder datasets; TFDS datasets take "
                        "\"skip\" (the default) or \"largest\"")
    builder = _tfds_builder(spec)
    how = (f"On a machine with network run `multitask data build tfds:{spec.name}`, or point TFDS_DATA_DIR at "
           "a folder where it is prepared.")
    if not builder.is_prepared() and not _downloads_at_hand() and (hosts := unreachable_hosts(first_urls(builder))):
        raise DataError(f"TFDS dataset {spec.name} is not prepared in {tfds_data_dir()} and its download "
                        f"cannot be reached from here ({', '.join(hosts)}: no answer within {TIMEOUT_S:.0f} s). {how}")
    try:
        _build(builder, regenerate=False)
    except Exception as exc:
        raise DataError(f"TFDS dataset {spec.name} is not prepared in {tfds_data_dir()} and could not be "
                        f"downloaded ({type(exc).__name__}: {str(exc)[:200]}). {how}") from exc
    entry = tfds_catalog.CATALOG[spec.name]
    labels = entry.label_feature(builder.info.features)
    # Real TFDS datasets are versioned and large: fingerprint their file listing, not contents.
    return DatasetRef(spec=data.dataset, kind="tfds", path=str(builder.data_path),
                      class_names=list(labels.names), splits={}, fingerprint=hash_listing(builder.data_path))


def prepare(data: DataConfig) -> DatasetRef:
    """Build (or reuse) the TFDS records for `data.dataset`."""
    spec = parse(data.dataset)
    preparers = {"shapes": _prepare_shapes, "folder": _prepare_folder, "tfds": _prepare_tfds}
    return preparers[spec.kind](data, spec)


def _with_keep(example: dict) -> dict:
    return {"image": example["image"], "label": example["label"], "bbox": example["bbox"],
            "filename": example.get("filename", tf.constant("")), "keep": tf.constant(True)}


def examples(dataset: DatasetRef, split: str, multi_object: str | None, *, images: bool = True) -> tf.data.Dataset:
    """One split as {"image", "label", "bbox", "filename", "keep"}; `images=False` skips decoding."""
    decoders = None if images else {"image": tfds.decode.SkipDecoding()}
    if dataset.kind != "tfds":
        builder = tfds.builder_from_directory(dataset.path)
        if split not in builder.info.splits:
            raise DataError(f"dataset {dataset.spec!r} has no {split} split")
        return builder.as_dataset(split=split, shuffle_files=False, decoders=decoders).map(_with_keep)
    spec = parse(dataset.spec)
    entry = tfds_catalog.CATALOG[spec.name]
    ds = _tfds_builder(spec).as_dataset(split=entry.splits[split], shuffle_files=False, decoders=decoders)
    convert = tfds_catalog.one_object(entry, multi_object or "skip")
    return ds.map(lambda ex: {**convert(ex), "filename": tf.constant("")})
