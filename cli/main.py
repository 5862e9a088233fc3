"""The `multitask` command: parse, call a flow, print. Everything that chains steps is a flow.

Heavy imports (TensorFlow, Prefect, MLflow) happen inside the commands, here and in every `cli`
module, so `--help` and argument errors answer in under a second instead of about six.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from cli import data, models, serving, tuning
from cli.common import (
    ConfigOption,
    DaskAddressOption,
    DatasetOption,
    EpochsOption,
    JsonOption,
    PresetOption,
    RunnerOption,
    SetOption,
    fail,
    import_tensorflow_quietly,
    print_json,
    quiet_environment,
    run_config,
    run_flow,
)
from multitask.calibration import calibration_line
from multitask.compare import VARIANTS, check_variants
from multitask.errors import UserError
from multitask.records import SUMMARY_METRICS
from multitask.slices import slice_rows, with_interval

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Multi-task (class + box) Keras models as cached Prefect flows with an MLflow registry.")
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.command()(serving.serve)
app.command()(serving.export)
app.command()(tuning.tune)


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo("")
    typer.echo(f"model {summary['model']} version {summary['version']} "
               f"aliases {', '.join(summary['aliases']) or '-'}")
    typer.echo("  " + "  ".join(f"{k} {summary['metrics'][k]:.4f}" for k in SUMMARY_METRICS))
    training = summary["training"]
    typer.echo(f"  training: {training['epochs']} epochs (best {training['best_epoch']}), stopped by "
               f"{training['stopped'].replace('_', ' ')}, {training['minutes']:.1f} min")
    typer.echo("  steps: " + ", ".join(f"{k} {v}" for k, v in summary["steps"].items()))
    typer.echo(f"  run dir: {summary['run_dir']}")


@app.command()
def train(dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
          config: ConfigOption = None, sets: SetOption = None, as_json: JsonOption = False) -> None:
    """Run the train flow: prepare data, snapshot, build, fit, evaluate, register."""
    loaded = run_config(dataset, preset, epochs, config, sets)
    from flows.train import train_flow  # imports Prefect and TensorFlow

    summary = run_flow(train_flow, config=loaded)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)


@app.command()
def retrain(dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
            config: ConfigOption = None, sets: SetOption = None, as_json: JsonOption = False) -> None:
    """Run the retrain flow: train a challenger, compare it with the champion, promote if better."""
    loaded = run_config(dataset, preset, epochs, config, sets)
    from flows.retrain import retrain_flow

    summary = run_flow(retrain_flow, config=loaded)
    if as_json:
        print_json(summary)
        return
    typer.echo(f"\n{summary['decision']}: challenger v{summary['challenger']} - {summary['reason']}")
    typer.echo(f"  champion: v{summary['champion']}" if summary["champion"] else "  no champion")


@app.command()
def compare(
    dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
    config: ConfigOption = None, sets: SetOption = None,
    seeds: int = typer.Option(3, min=1, help="Seeds per variant."),
    variants: str = typer.Option(",".join(VARIANTS), help="Comma-separated variants to train."),
    concurrency: int = typer.Option(1, min=1, help="Trainings at once (1 on a 2-core CPU)."),
    runner: RunnerOption = "thread", dask_address: DaskAddressOption = None,
    out: Path | None = typer.Option(None, help="Also copy comparison.md/.json/.png into this folder."),
    as_json: JsonOption = False,
) -> None:
    """Label-only, box-only and multi-task (each weighting) models, same budget, over seeds."""
    loaded = run_config(dataset, preset, epochs, config, sets)
    try:
        chosen = check_variants([v.strip() for v in variants.split(",") if v.strip()])
    except UserError as exc:
        fail(str(exc))
    from flows.compare import run_compare

    summary = run_flow(run_compare, config=loaded, seeds=seeds, concurrency=concurrency, variants=chosen,
                       runner=runner, dask_address=dask_address)
    if out is not None:
        summary["copied"] = _copy_report(summary, out)
    if as_json:
        print_json(summary)
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
        fail(f"cannot write the report to {out}: {exc.strerror or exc}")


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, ...)."),
    model: str = typer.Option("multitask-shapes@champion", help="NAME@ALIAS or NAME/VERSION."),
    as_json: JsonOption = False,
) -> None:
    """Label, score and pixel box (xmin, ymin, xmax, ymax in the original image) per image."""
    quiet_environment()
    import_tensorflow_quietly()
    from multitask import registry
    from multitask.predict import predict as run_predict

    try:
        loaded, metadata = registry.load_registered(model)
        rows = run_predict(loaded, list(images), metadata)
    except UserError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        box = row["box"]
        typer.echo(f"{row['image']}: {row['label']} {row['score']:.3f} "
                   f"box {box['xmin']:.1f},{box['ymin']:.1f},{box['xmax']:.1f},{box['ymax']:.1f}")


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Option(..., help="NAME@ALIAS or NAME/VERSION."),
    dataset: str = typer.Option(..., help="Dataset spec; its test split is used."),
    sets: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a registered model on a dataset's test split (built at the model's input size)."""
    loaded = run_config(dataset, sets=sets)
    from flows.evaluate import evaluate_flow

    summary = run_flow(evaluate_flow, model=model, config=loaded)
    if as_json:
        print_json(summary)
        return
    typer.echo(f"{model} on {dataset} (test): " + "  ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items()))
    typer.echo(calibration_line(summary["calibration"]))
    for row in slice_rows(summary["slices"]):
        if row["count"]:
            typer.echo(f"  {row['slice']:<24} n={row['count']:<5} accuracy {with_interval(row, 'accuracy')}  "
                       f"mean_iou {with_interval(row, 'mean_iou')}")


def main() -> None:
    """The process's entry point. Logging ends with the command: what Prefect logs while the process
    exits (its temporary server stopping) would otherwise follow the `--json` line on stdout."""
    try:
        app()
    finally:
        logging.disable(logging.CRITICAL)
