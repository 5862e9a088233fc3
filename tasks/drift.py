"""Drift step: new data against the data a registered version was trained on, shown in the UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from multitask import registry
from multitask.records import PROFILE_FILE, DriftReport, ModelVersion, SnapshotRef
from tasks import retries
from tasks.caching import output_dir
from tasks.pictures import inline_png


@task(name="measure_drift", result_serializer="json", **retries.IO)
def measure_drift(version: ModelVersion, snapshot: SnapshotRef, dataset: str) -> DriftReport:
    """Test every feature (`multitask.drift`), log the report as an MLflow run of the model's
    experiment and as the flow run's `data-drift` artifact."""
    from multitask.drift import check

    out = output_dir("measure_drift", version=version, snapshot=snapshot)
    report = check(f"{version.name}/{version.version}", snapshot, out)
    run_id = registry.log_drift(report, dataset)
    create_markdown_artifact(key="data-drift", description=f"{dataset} against {report.against}", markdown="\n\n".join([
        f"# {dataset} against {report.against}: {'drift' if report.drift else 'no drift'}",
        "\n".join(f"- {line}" for line in report.drifted) or "No feature moved.",
        inline_png(report.picture_path, "Trained-on and new distributions"),
        f"MLflow: [{run_id}]({registry.run_url(run_id)}); every test: `{report.path}`"]))
    return report


@task(name="tag_drift", **retries.IO)
def tag_drift(challenger: ModelVersion, drift: DriftReport | None, reason: str = "") -> dict[str, str]:
    """The challenger's tags `drift.verdict` (`drift`, `no drift`, or `not measured` and why),
    `drift.against` and `drift.features` (the drifted ones)."""
    if drift is None:
        tags = {"drift.verdict": "not measured", "drift.reason": reason}
    else:
        tags = {"drift.verdict": "drift" if drift.drift else "no drift", "drift.against": drift.against,
                "drift.features": "; ".join(drift.drifted)}
    registry.set_tags(challenger.name, challenger.version, tags)
    return tags



@task(name="drift_reference", **retries.IO)
def drift_reference(version: ModelVersion) -> bool:
    """Whether the version was logged with what drift compares against (its data profile and its
    model's view of the training split): versions registered before they existed were not."""
    from multitask.drift import MODEL_VIEW

    return {PROFILE_FILE, MODEL_VIEW} <= registry.run_files(f"{version.name}/{version.version}")
