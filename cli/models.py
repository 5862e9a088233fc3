"""`multitask models list|show|card|promote|reregister`: registered models."""

from __future__ import annotations

import getpass
import os

import typer

from cli.common import JsonOption, fail, import_tensorflow_quietly, print_json, quiet_environment
from multitask.errors import UserError

app = typer.Typer(no_args_is_help=True, help="Registered models.")


def _current_user() -> str:
    """The login name, asked at call time: a container user without a passwd entry has none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or f"uid {os.getuid()}"


@app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """Registered models and their versions, newest first."""
    quiet_environment()
    from multitask import registry

    rows = registry.list_models()
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no registered models")
        return
    typer.echo(f"{'name':<24} {'version':>7}  {'accuracy':>8}  {'mean_iou':>8}  aliases")
    for row in rows:
        typer.echo(f"{row['name']:<24} {row['version']:>7}  {row['accuracy'] or '-':>8.8}  "
                   f"{row['mean_iou'] or '-':>8.8}  {', '.join(row['aliases'])}")


@app.command("show")
def models_show(
    model: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION."),
    as_json: JsonOption = False,
) -> None:
    """One version: aliases, tags (lineage, metrics, gate decisions), source."""
    quiet_environment()
    from multitask import registry

    try:
        info = registry.show(model)
    except UserError as exc:
        fail(str(exc))
    if as_json:
        print_json(info)
        return
    typer.echo(f"{info['name']} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}")
    for key in sorted(info["tags"]):
        typer.echo(f"  {key}: {info['tags'][key]}")



@app.command("card")
def models_card(model: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION.")) -> None:
    """The version's model card (markdown): use, data, training, results per slice, calibration,
    the gate's decision, lineage, known limits. Rendered from what the registry holds now."""
    quiet_environment()
    from multitask import registry

    try:
        typer.echo(registry.card(model), nl=False)
    except UserError as exc:
        fail(str(exc))

@app.command("promote")
def models_promote(
    model: str = typer.Argument(..., help="NAME/VERSION (or NAME@ALIAS) to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded on the version."),
    by: str | None = typer.Option(None, "--by", help="Who: recorded on the version (default: you)."),
) -> None:
    """Move `champion` by hand, recording who and why as tags. Waits for a promotion in flight
    (a retrain's gate) to finish, so that neither undoes the other unseen."""
    quiet_environment()
    from multitask import registry
    from tasks.exclusive import one_at_a_time  # the lock the retrain flow's gate takes

    try:
        info = registry.show(model)
        with one_at_a_time("promote", info["name"]):
            registry.promote(info["name"], info["version"], {"promoted_by": by or _current_user(),
                                                              "promotion_reason": reason, "promotion": "manual"})
    except UserError as exc:
        fail(str(exc))
    typer.echo(f"{info['name']} version {info['version']} is now champion")


@app.command("reregister")
def models_reregister(
    model: str = typer.Argument(..., help="NAME/VERSION (or NAME@ALIAS) registered with a pickled model."),
) -> None:
    """Register a version again without a pickled model (the same trained weights), so that
    `multitask serve` serves it: a new version with its tags, which takes over its aliases."""
    quiet_environment()
    import_tensorflow_quietly()
    from multitask import registry
    from tasks.exclusive import one_at_a_time  # the new version may take over `champion`

    try:
        name = registry.resolve(model).name
        with one_at_a_time("promote", name):
            old, new = registry.reregister(model)
    except UserError as exc:
        fail(str(exc))
    typer.echo(f"{name} version {old.version} is registered again as version {new.version}"
               + (f" ({', '.join(new.aliases)})" if new.aliases else ""))
