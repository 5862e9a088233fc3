"""Data steps: build the TFDS records, the preprocessed snapshot training reads, and check it.

Like every task module, it imports TensorFlow-backed library code inside the steps: a flow run
whose steps are all cached never imports TensorFlow (seconds on 2 cores), which `prefect deploy`,
every worker run and the 10-minute `watch` would pay. TensorFlow Datasets itself is imported when
`tasks` loads (about 0.5 s; it imports TensorFlow lazily): see `tasks/__init__.py` for why."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from multitask.config import DataConfig
from multitask.records import DatasetRef, SnapshotRef, ValidationReport
from tasks import retries
from tasks.caching import output_dir


@task(name="prepare_dataset", result_serializer="json", **retries.IO)
def prepare_dataset(data: DataConfig) -> DatasetRef:
    from multitask.datasets import catalog

    return catalog.prepare(data)


@task(name="build_snapshot", result_serializer="json", **retries.IO)
def build_snapshot(dataset: DatasetRef, data: DataConfig) -> SnapshotRef:
    from multitask import pipeline

    return pipeline.build_snapshot(dataset, data, output_dir("build_snapshot", dataset=dataset, data=data))


def _markdown(report: ValidationReport) -> str:
    lines = ["# Dataset validation", "",
             "examples: " + ", ".join(f"{split} {n}" for split, n in report.examples.items())]
    lines += ["", "warnings:"] + [f"- {w}" for w in report.warnings] if report.warnings else ["", "no warnings"]
    return "\n".join(lines + ["", f"report: `{report.path}`"])


@task(name="validate_dataset", result_serializer="json")
def validate_dataset(snapshot: SnapshotRef) -> ValidationReport:
    from multitask.validate import validate

    report = validate(snapshot, output_dir("validate_dataset", snapshot=snapshot))
    for warning in report.warnings:
        get_run_logger().warning("dataset: %s", warning)
    create_markdown_artifact(key="dataset-validation", markdown=_markdown(report),
                             description="Dataset validation report")
    return report
