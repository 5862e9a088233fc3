"""Registration step: an MLflow run and a registered model version with its lineage tags."""

from __future__ import annotations

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from multitask import registry
from multitask.config import RunConfig
from multitask.records import DatasetRef, EvalReport, ModelVersion, SnapshotRef, TrainedModelRef
from tasks import retries
from tasks.exclusive import one_at_a_time


@task(name="register_model", result_serializer="json", **retries.IO)
def register_model(trained: TrainedModelRef, report: EvalReport, dataset: DatasetRef, snapshot: SnapshotRef,
                   config: RunConfig, first_is_champion: bool = True) -> ModelVersion:
    # The class names themselves are in the model's metadata (`registry.preprocessing`).
    tags = {**registry.lineage_tags(dataset, config), "dataset": dataset.spec,
            "num_classes": str(dataset.num_classes), "prefect_flow_run_id": str(runtime.flow_run.id or "")}
    # + the model's input size; the served model refuses images over the pixel limit training had
    preprocessing = {"class_names": dataset.class_names, "resize": config.data.resize,
                     "max_pixels": config.data.max_pixels,
                     **({"temperature": trained.temperature} if trained.temperature is not None else {})}
    profile = snapshot.profile_path
    if first_is_champion:  # "champion unless there is one" is a promotion: one at a time
        with one_at_a_time("promote", config.model_name):
            version = registry.register(trained, report, config, tags, preprocessing, first_is_champion, profile)
    else:
        version = registry.register(trained, report, config, tags, preprocessing, first_is_champion, profile)
    publish_card(version)
    create_link_artifact(key="mlflow-run", link=registry.run_url(version.run_id),
                         link_text=f"{version.name} v{version.version} in MLflow",
                         description=f"The MLflow run (store: {registry.client().tracking_uri}; a local store "
                                     "shows with `mlflow ui --backend-store-uri` that URI)")
    return version


def publish_card(version: ModelVersion) -> None:
    """Log the version's model card with it and show it as the flow run's `model-card` artifact.
    Best effort: the version stands without its card, so a failure here is a warning, not a failed step."""
    try:
        card = registry.log_card(f"{version.name}/{version.version}")
    except Exception as exc:  # noqa: BLE001  (any failure: the card is a description, not the model)
        get_run_logger().warning("no model card for %s v%s: %s", version.name, version.version, exc)
        return
    create_markdown_artifact(key="model-card", markdown=card, description=f"{version.name} v{version.version}")
