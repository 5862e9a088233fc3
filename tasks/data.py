"""Data steps: build the TFDS records, then the preprocessed snapshot training reads."""

from __future__ import annotations

from prefect import task

from multitask.config import DataConfig
from multitask.datasets import catalog
from multitask.pipeline import build_snapshot as write_snapshot
from multitask.records import DatasetRef, SnapshotRef
from tasks import retries
from tasks.caching import output_dir


@task(name="prepare_dataset", result_serializer="json", **retries.IO)
def prepare_dataset(data: DataConfig) -> DatasetRef:
    return catalog.prepare(data)


@task(name="build_snapshot", result_serializer="json", **retries.IO)
def build_snapshot(dataset: DatasetRef, image_size: int) -> SnapshotRef:
    return write_snapshot(dataset, image_size, output_dir())
