"""`multitask tune`: search a config space with pruned trials of the train flow's steps."""

from __future__ import annotations

from typing import Any

import typer

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
    print_json,
    run_config,
    run_flow,
)
from multitask.errors import UserError


def tune(
    dataset: DatasetOption = None, preset: PresetOption = "default", epochs: EpochsOption = None,
    config: ConfigOption = None, sets: SetOption = None,
    space: str = typer.Option(..., help="Settings to search: 'train.learning_rate=1e-4..3e-3:log, "
                              "data.image_size=64|96|128' (LOW..HIGH, :log, A|B|C), or a TOML file."),
    trials: int = typer.Option(12, min=1, help="Trials to end (complete, pruned or failed), this run and earlier."),
    concurrency: int = typer.Option(1, min=1, help="Trials at once (1 on a 2-core CPU)."),
    runner: RunnerOption = "thread", dask_address: DaskAddressOption = None,
    timeout: float | None = typer.Option(None, min=0, help="Start no trial after this many minutes."),
    as_json: JsonOption = False,
) -> None:
    """Tune settings: trials of our own training, pruned, the best config written as TOML.

    The same command run again continues its study: ended trials are not trained again."""
    loaded = run_config(dataset, preset, epochs, config, sets)
    from multitask import search_space

    try:
        search_space.parse(space, loaded)  # one line for a bad space, before Prefect or TensorFlow start
    except UserError as exc:
        fail(str(exc))
    from flows.tune import run_tune

    summary = run_flow(run_tune, config=loaded, space=space, trials=trials, concurrency=concurrency,
                       runner=runner, dask_address=dask_address, timeout_minutes=timeout)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    counts = summary["trials"]
    typer.echo(f"\nstudy {summary['study']}: {counts['complete']} complete, {counts['pruned']} pruned, "
               f"{counts['failed']} failed")
    best = summary["best"]
    if best is None:
        typer.echo("  no trial completed")
        return
    typer.echo(f"  best: trial {best['trial']}, validation score {best['value']:.4f}, "
               + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()))
    typer.echo(f"  config: {summary['config']}  (multitask train --config {summary['config']})")
