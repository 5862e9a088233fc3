"""`multitask data build|validate`: a dataset's records, and a check of its snapshot (both flows)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import JsonOption, SetOption, print_json, run_config, run_flow

app = typer.Typer(no_args_is_help=True, help="Datasets: build the TFDS records, validate them.")


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
