"""Evaluation step: test metrics, plots, and Prefect artifacts that show them."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from multitask.calibration import calibration_line
from multitask.config import EvaluateConfig
from multitask.records import EvalReport, SnapshotRef, TrainedModelRef
from multitask.slices import markdown_table
from tasks.caching import output_dir
from tasks.pictures import inline_png


def _summary(report: EvalReport, trained: TrainedModelRef) -> str:
    m = report.metrics
    return "\n".join([
        "# Test metrics",
        f"accuracy **{m['accuracy']:.3f}**, mean IoU **{m['mean_iou']:.3f}**, "
        f"IoU>=0.5 **{m['iou50']:.3f}**, top-5 {m['top5_accuracy']:.3f}",
        f"losses: total {m['loss']:.4f}, label {m['label_loss']:.4f}, box {m['box_loss']:.4f}",
        calibration_line(report.calibration),
        f"training: {trained.epochs} epochs (best {trained.best_epoch}), "
        f"{trained.train_seconds:.1f} s, {trained.images_per_second:.0f} images/s",
        *_slices(report),
        *_pictures(report),
        "files: " + ", ".join(f"`{path}`" for path in report.files),
    ])


def _slices(report: EvalReport) -> list[str]:
    """The slice table: each head per class and per object size, with 95% intervals."""
    return ["## Slices", *markdown_table(report.slices)] if report.slices else []


def _pictures(report: EvalReport) -> list[str]:
    shown = {"Training curves": report.curves_path, "Predictions on test images": report.predictions_path,
             "Confusion matrix": report.confusion_path, "Slices": report.slices_path,
             "Calibration of the label scores": report.reliability_path}
    return [f"## {title}\n\n{inline_png(path, title)}" for title, path in shown.items() if path]


@task(name="evaluate_model", result_serializer="json")
def evaluate_model(trained: TrainedModelRef, snapshot: SnapshotRef, evaluate_config: EvaluateConfig) -> EvalReport:
    from multitask.evaluate import evaluate

    out = output_dir("evaluate_model", trained=trained, snapshot=snapshot, evaluate_config=evaluate_config)
    report = evaluate(trained.model_path, snapshot, evaluate_config, out, trained.history_path, trained.temperature,
                      model_view=True)
    create_table_artifact(key="test-metrics", table=[{"metric": k, "value": v} for k, v in report.metrics.items()],
                          description="Test-split metrics of the trained model")
    create_markdown_artifact(key="evaluation-summary", markdown=_summary(report, trained),
                             description="Evaluation summary")
    return report
