"""`multitask serve|export`: a registered model used outside this project (MLflow's scoring
server, a TF SavedModel, a TFLite file); nothing here serves requests itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from cli.common import ConfigOption, SetOption, fail, import_tensorflow_quietly, quiet_environment, run_config
from multitask.errors import UserError

ModelOption = typer.Option("multitask-shapes@champion", help="NAME@ALIAS or NAME/VERSION.")


def serve(
    model: str = ModelOption,
    port: int = typer.Option(5001, min=1, max=65535, help="Port of the scoring server."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """MLflow's scoring server for a registered model: POST /invocations with
    {"dataframe_split": {"columns": ["image"], "data": [["<base64 image bytes>"], ...]}}.

    The version is downloaded and checked first: it must load through this package (a version
    registered with a pickled model is refused), and MLflow runs with pickle loading off.
    `[serve]` settings (`--set serve.max_request_pixels=...`) bound what one request may cost."""
    settings = run_config(config=config, sets=sets).serve
    from multitask import registry, workspace
    from multitask.serving import SERVE_CONFIG_ENV

    try:
        version = registry.resolve(model)  # one line for an unknown model, before MLflow starts
        served = registry.fetch_servable(f"{version.name}/{version.version}",
                                         workspace.root() / "serving" / f"{version.name}-{version.version}")
    except UserError as exc:
        fail(str(exc))
    typer.echo(f"serving {model} (version {version.version}) on http://{host}:{port}/invocations")
    sys.stdout.flush()  # before this process becomes MLflow's
    # MLflow starts `uvicorn` by name: this Python's scripts folder first, even if not activated.
    scripts = os.path.dirname(sys.executable)
    env = {**os.environ, "MLFLOW_TRACKING_URI": workspace.tracking_uri(), SERVE_CONFIG_ENV: settings.model_dump_json(),
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
           "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(served), "--env-manager", "local",
               "--host", host, "--port", str(port)]
    os.execvpe(sys.executable, command, env)


def export(
    model: str = ModelOption,
    fmt: str = typer.Option(..., "--format", help="saved_model: takes encoded image bytes, returns class "
                            "scores and the box in pixels; tflite: takes the resized image (float32)."),
    out: Path = typer.Option(..., help="Folder to write, replaced whole: it must be absent, empty or an earlier "
                             "export (see --force)."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if it holds other files (they are deleted)."),
) -> None:
    """A registered model as a TF SavedModel or TFLite file, with its preprocessing.json."""
    quiet_environment()
    import_tensorflow_quietly()
    from multitask import registry
    from multitask.export import check_format, check_out
    from multitask.export import export as write_export

    try:
        check_format(fmt)  # before the model is fetched
        check_out(out, force)
        loaded, metadata = registry.load_registered(model)
        typer.echo(str(write_export(loaded, metadata, fmt, out, force)))
    except UserError as exc:
        fail(str(exc))
