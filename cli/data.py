"""`multitask data build|validate|drift`: a dataset's records, a check of its snapshot, and whether it
looks like the data a registered version was trained on (all flows)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import JsonOption, SetOption, print_json, run_config, run_flow

app = typer.Typer(no_args_is_help=True, help="Datasets: build the TFDS records, validate them, check drift.")
DRIFT_EXIT = 3  # `data drift`: the data has drifted


@app.command("build")
def data_build(
    spec: str = typer.Argument(..., help="`shapes`, `tfds:NAME` or `folder:PATH`."),
    sets: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build (or reuse) the TFDS records of a dataset in the workspace."""
    config = run_config(spec, sets=sets)
    from flows.data import data_flow

    ref = run_flow(data_flow, config=config, check=False)["dataset"]
    if as_json:
        print_json(ref)
        return
    typer.echo(f"{ref['spec']}: {len(ref['class_names'])} classes, "
               f"{', '.join(f'{k} {v}' for k, v in ref['splits'].items()) or 'split sizes unknown'}")
    typer.echo(f"  records: {ref['path']}")


@app.command("validate")
def data_validate(
    spec: str = typer.Argument(..., help="`shapes`, `tfds:NAME` or `folder:PATH`."),
    sets: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the dataset and its snapshot, check labels, boxes, splits and classes; exit 2 if bad."""
    config = run_config(spec, sets=sets)
    from flows.data import data_flow

    report = run_flow(data_flow, config=config, check=True)["validation"]
    if as_json:
        print(Path(report["path"]).read_text().replace("\n", " "))
        return
    typer.echo(f"{spec}: ok, " + ", ".join(f"{k} {v}" for k, v in report["examples"].items()))
    for warning in report["warnings"]:
        typer.echo(f"  warning: {warning}")
    typer.echo(f"  report: {report['path']}")


@app.command("drift")
def data_drift(
    spec: str = typer.Argument(..., help="`shapes`, `tfds:NAME` or `folder:PATH`: the new data."),
    against: str = typer.Option(..., help="NAME@ALIAS or NAME/VERSION: the model whose training data it is "
                                "compared with."),
    sets: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Does the data look like what the version was trained on? One test per feature (images, boxes,
    classes, the model's own view); exit 0 when nothing drifted, 3 when something did (one line each)."""
    config = run_config(spec, sets=sets)
    from flows.drift import drift_flow

    found = run_flow(drift_flow, against=against, config=config)
    if as_json:
        print_json(found)
    else:
        typer.echo(f"{spec} against {found['against']}: {'drift' if found['drift'] else 'no drift'}")
        for line in found["drifted"]:
            typer.echo(f"  {line}")
    if found["drift"]:
        raise typer.Exit(DRIFT_EXIT)
