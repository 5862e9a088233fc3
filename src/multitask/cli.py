"""The `multitask` command.

Heavy imports (TensorFlow, Prefect, MLflow) happen inside the commands, so `--help` and
argument errors answer at once.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from multitask.compare import VARIANTS
from multitask.config import load_config
from multitask.datasets.spec import parse as parse_spec
from multitask.errors import UserError, storage_problem

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Multi-task (class + box) Keras models as cached Prefect flows with an MLflow registry.")
models_app = typer.Typer(no_args_is_help=True, help="Registered models.")
app.add_typer(models_app, name="models")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: build the TFDS records, validate them.")
app.add_typer(data_app, name="data")

_METRICS = ("accuracy", "mean_iou", "iou50", "loss", "label_loss", "box_loss")

# Options shared by `train` and `retrain`.
DatasetOption = Annotated[Optional[str], typer.Option(help="Dataset spec: shapes, tfds:NAME, folder:PATH.")]
PresetOption = Annotated[str, typer.Option(help="`seed` (the starting point) or `default`.")]
EpochsOption = Annotated[Optional[int], typer.Option(help="Training epochs (overrides the preset).")]
ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="A TOML file with config sections.")]
SetOption = Annotated[list[str], typer.Option("--set", help="section.key=value, repeatable.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]


def _current_user() -> str:
    """The login name, asked at call time: a container user without a passwd entry has none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or f"uid {os.getuid()}"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _quiet_environment() -> None:
    """Offline-friendly defaults; the user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr is for errors


def _run_config(dataset: str | None, preset: str, epochs: int | None, config: Path | None,
                sets: list[str]) -> Any:
    overrides: dict[str, Any] = {}
    if dataset is not None:
        overrides["data"] = {"dataset": dataset}
    if epochs is not None:
        overrides["train"] = {"epochs": epochs}
    try:
        run_config = load_config(preset, config, sets, overrides)
        parse_spec(run_config.data.dataset)
    except UserError as exc:
        _fail(str(exc))
    _quiet_environment()
    return run_config


def _run_flow(flow: Any, run_config: Any) -> dict[str, Any]:
    try:
        return flow(config=run_config)
    except UserError as exc:
        _fail(str(exc))
    except Exception as exc:
        if (problem := storage_problem(exc)) is None:
            raise
        _fail(problem)


def _data_config(spec: str, sets: list[str]):
    return _run_config(spec, "default", None, None, sets).data


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo("")
    typer.echo(f"model {summary['model']} version {summary['version']} "
               f"aliases {', '.join(summary['aliases']) or '-'}")
    typer.echo("  " + "  ".join(f"{k} {summary['metrics'][k]:.4f}" for k in _METRICS))
    training = summary["training"]
    typer.echo(f"  training: {training['epochs']} epochs (best {training['best_epoch']}), stopped by "
               f"{training['stopped'].replace('_', ' ')}, {training['minutes']:.1f} min")
    typer.echo("  steps: " + ", ".join(f"{k} {v}" for k, v in summary["steps"].items()))
    typer.echo(f"  run dir: {summary['run_dir']}")


@app.command()
def train(dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
          config: ConfigOption = None, sets: SetOption = [], as_json: JsonOption = False) -> None:
    """Run the train flow: prepare data, snapshot, build, fit, evaluate, register."""
    run_config = _run_config(dataset, preset, epochs, config, sets)
    from flows.train import train_flow  # imports Prefect and TensorFlow

    summary = _run_flow(train_flow, run_config)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        _print_summary(summary)


@app.command()
def retrain(dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
            config: ConfigOption = None, sets: SetOption = [], as_json: JsonOption = False) -> None:
    """Run the retrain flow: train a challenger, compare it with the champion, promote if better."""
    run_config = _run_config(dataset, preset, epochs, config, sets)
    from flows.retrain import retrain_flow

    summary = _run_flow(retrain_flow, run_config)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    typer.echo(f"\n{summary['decision']}: challenger v{summary['challenger']} - {summary['reason']}")
    typer.echo(f"  champion: v{summary['champion']}" if summary["champion"] else "  no champion")


@app.command()
def compare(
    dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
    config: ConfigOption = None, sets: SetOption = [],
    seeds: int = typer.Option(3, min=1, help="Seeds per variant."),
    variants: str = typer.Option(",".join(VARIANTS), help="Comma-separated variants to train."),
    concurrency: int = typer.Option(1, min=1, help="Trainings at once (1 on a 2-core CPU)."),
    out: Optional[Path] = typer.Option(None, help="Also copy comparison.md/.json/.png into this folder."),
    as_json: JsonOption = False,
) -> None:
    """Label-only, box-only and multi-task (each weighting) models, same budget, over seeds."""
    run_config = _run_config(dataset, preset, epochs, config, sets)
    from flows.compare import run_compare

    try:
        summary = run_compare(run_config, seeds, [v.strip() for v in variants.split(",") if v.strip()], concurrency)
    except UserError as exc:
        _fail(str(exc))
    if out is not None:
        summary["copied"] = _copy_report(summary, out)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        typer.echo("\n" + Path(summary["report"]).read_text())
        typer.echo(f"report: {summary['report']}\nplot: {summary['plot']}")


def _copy_report(summary: dict[str, Any], out: Path) -> list[str]:
    from multitask import atomic

    try:
        out.mkdir(parents=True, exist_ok=True)
        return [str(atomic.write_bytes(out / Path(summary[kind]).name, Path(summary[kind]).read_bytes()))
                for kind in ("report", "json", "plot")]
    except OSError as exc:
        _fail(f"cannot write the report to {out}: {exc.strerror or exc}")


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, ...)."),
    model: str = typer.Option("multitask-shapes@champion", help="NAME@ALIAS or NAME/VERSION."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list as the last stdout line."),
) -> None:
    """Label, score and pixel box (xmin, ymin, xmax, ymax in the original image) per image."""
    _quiet_environment()
    from multitask import registry
    from multitask.predict import predict as run_predict

    try:
        loaded, metadata = registry.load_registered(model)
        rows = run_predict(loaded, list(images), metadata)
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    for row in rows:
        box = row["box"]
        typer.echo(f"{row['image']}: {row['label']} {row['score']:.3f} "
                   f"box {box['xmin']:.1f},{box['ymin']:.1f},{box['xmax']:.1f},{box['ymax']:.1f}")


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Option(..., help="NAME@ALIAS or NAME/VERSION."),
    dataset: str = typer.Option(..., help="Dataset spec; its test split is used."),
    sets: list[str] = typer.Option([], "--set", help="data.key=value or evaluate.key=value, repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last stdout line."),
) -> None:
    """Evaluate a registered model on a dataset's test split (built with the model's image size)."""
    run_config = _run_config(dataset, "default", None, None, sets)
    from multitask import registry, workspace
    from multitask.datasets import catalog
    from multitask.evaluate import evaluate
    from multitask.gate import classes_differ
    from multitask.pipeline import build_snapshot

    try:
        with workspace.scratch("evaluate") as scratch:
            path, metadata = registry.fetch(model, scratch / "model")
            data = run_config.data.model_copy(update={"image_size": int(metadata.get("image_size", 64)),
                                                      "resize": metadata.get("resize", "stretch")})
            dataset_ref = catalog.prepare(data)
            difference = classes_differ(metadata.get("class_names", []), dataset_ref.class_names)
            if difference is not None:
                raise UserError(f"cannot evaluate {model} on {dataset}: the model was {difference}")
            snapshot = build_snapshot(dataset_ref, data, scratch / "snapshot")
            out_dir = workspace.root() / "evaluations" / model.replace("/", "@")
            report = evaluate(str(path), snapshot, run_config.evaluate, out_dir)
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps({"model": model, "dataset": dataset, "metrics": report.metrics}) + "\n")
        return
    typer.echo(f"{model} on {dataset} (test): " + "  ".join(f"{k} {v:.4f}" for k, v in report.metrics.items()))


@data_app.command("build")
def data_build(
    spec: str = typer.Argument(..., help="`shapes`, `tfds:NAME` or `folder:PATH`."),
    sets: list[str] = typer.Option([], "--set", help="data.key=value, repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Build (or reuse) the TFDS records of a dataset in the workspace."""
    data = _data_config(spec, sets)
    from multitask.datasets import catalog

    try:
        ref = catalog.prepare(data)
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(ref.model_dump_json() + "\n")
        return
    typer.echo(f"{ref.spec}: {len(ref.class_names)} classes, "
               f"{', '.join(f'{k} {v}' for k, v in ref.splits.items()) or 'split sizes unknown'}")
    typer.echo(f"  records: {ref.path}")


@data_app.command("validate")
def data_validate(
    spec: str = typer.Argument(..., help="`shapes`, `tfds:NAME` or `folder:PATH`."),
    sets: list[str] = typer.Option([], "--set", help="data.key=value, repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Build the dataset and its snapshot, check labels, boxes, splits and classes; exit 2 if bad."""
    data = _data_config(spec, sets)
    from multitask import workspace
    from multitask.datasets import catalog
    from multitask.pipeline import build_snapshot
    from multitask.validate import validate

    report_dir = workspace.ensure(workspace.root() / "validation")
    try:
        with workspace.scratch("validate") as scratch:
            report = validate(build_snapshot(catalog.prepare(data), data, scratch / "snapshot"), report_dir)
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(Path(report.path).read_text().replace("\n", " ") + "\n")
        return
    typer.echo(f"{spec}: ok, " + ", ".join(f"{k} {v}" for k, v in report.examples.items()))
    for warning in report.warnings:
        typer.echo(f"  warning: {warning}")
    typer.echo(f"  report: {report.path}")


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """Registered models and their versions, newest first."""
    _quiet_environment()
    from multitask import registry

    rows = registry.list_models()
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    if not rows:
        typer.echo("no registered models")
        return
    typer.echo(f"{'name':<24} {'version':>7}  {'accuracy':>8}  {'mean_iou':>8}  aliases")
    for row in rows:
        typer.echo(f"{row['name']:<24} {row['version']:>7}  {row['accuracy'] or '-':>8.8}  "
                   f"{row['mean_iou'] or '-':>8.8}  {', '.join(row['aliases'])}")


@models_app.command("show")
def models_show(
    model: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """One version: aliases, tags (lineage, metrics, gate decisions), source."""
    _quiet_environment()
    from multitask import registry

    try:
        info = registry.show(model)
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    typer.echo(f"{info['name']} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}")
    for key in sorted(info["tags"]):
        typer.echo(f"  {key}: {info['tags'][key]}")


@models_app.command("promote")
def models_promote(
    model: str = typer.Argument(..., help="NAME/VERSION (or NAME@ALIAS) to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded on the version."),
    by: Optional[str] = typer.Option(None, "--by", help="Who: recorded on the version (default: you)."),
) -> None:
    """Move `champion` by hand, recording who and why as tags."""
    _quiet_environment()
    by = by or _current_user()
    from multitask import registry

    try:
        info = registry.show(model)
        registry.promote(info["name"], info["version"], {"promoted_by": by, "promotion_reason": reason,
                                                          "promotion": "manual"})
    except UserError as exc:
        _fail(str(exc))
    typer.echo(f"{info['name']} version {info['version']} is now champion")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
