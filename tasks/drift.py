"""Drift step: new data against the data a registered version was trained on, shown in the UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from multitask import registry
from multitask.config import RunConfig
from multitask.records import MODEL_VIEW, PROFILE_FILE, DatasetRef, DriftReport, ModelVersion, SnapshotRef
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
def tag_drift(challenger: ModelVersion, drift: DriftReport | None, verdict: str = "not measured",
              reason: str = "") -> dict[str, str]:
    """The challenger's tags `drift.verdict` (`drift`, `no drift`, or `not measured`), `drift.against`
    and `drift.features` (the drifted ones) from a report; without one, `verdict` and `drift.reason`."""
    if drift is None:
        tags = {"drift.verdict": verdict, "drift.reason": reason}
    else:
        tags = {"drift.verdict": "drift" if drift.drift else "no drift", "drift.against": drift.against,
                "drift.features": "; ".join(drift.drifted)}
    registry.set_tags(challenger.name, challenger.version, tags)
    return tags


@task(name="drift_known", **retries.IO)
def drift_known(version: ModelVersion, dataset: DatasetRef, config: RunConfig) -> tuple[str, str] | None:
    """The verdict and its reason when the data need not or cannot be measured against the
    version's, else None. Need not: the version was trained on this data with these data
    settings (the same snapshot). Cannot: it was registered before versions were logged with
    their data's profile and their model's view."""
    if registry.same_data(version, dataset, config):
        return "no drift", f"the data and data settings champion v{version.version} was trained on"
    if not {PROFILE_FILE, MODEL_VIEW} <= registry.run_files(f"{version.name}/{version.version}"):
        return "not measured", f"champion v{version.version} was registered without a profile of its data"
    return None
