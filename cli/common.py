"""What every command shares: options, config loading, running a flow, one-line errors."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from multitask import workspace
from multitask.config import RunConfig
from multitask.config_loader import load_config
from multitask.datasets.spec import parse as parse_spec
from multitask.errors import UserError, storage_problem

DatasetOption = Annotated[str | None, typer.Option(help="Dataset spec: shapes, tfds:NAME, folder:PATH.")]
PresetOption = Annotated[str, typer.Option(help="`seed` (the starting point) or `default`.")]
EpochsOption = Annotated[int | None, typer.Option(help="The most training epochs (overrides the preset).")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="A TOML file with config sections.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on the last line of stdout.")]
RunnerOption = Annotated[str, typer.Option(help="thread: trainings as threads of this process; dask: each in a "
                                           "Dask worker process (a local cluster of --concurrency workers).")]
DaskAddressOption = Annotated[str | None, typer.Option(
    help="Use the Dask cluster at tcp://HOST:PORT (with --runner dask); its workers need MULTITASK_HOME and "
    "PREFECT_API_URL.")]


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


# What `import tensorflow` writes to stderr before its logging is set up, whatever
# TF_CPP_MIN_LOG_LEVEL says: absl's notice and oneDNN's, twice.
TENSORFLOW_START_UP = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


# How long a command waits, after its flow, for Prefect to send what it has queued (see `drain_prefect`).
DRAIN_SECONDS = 60.0


def quiet_environment() -> None:
    """Offline-friendly defaults; the user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # stderr is for errors: progress (Prefect's step logs, MLflow's download bars) goes to stdout or nowhere
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.stdout")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Prefect waits 20 s for its temporary server to start: too short on a busy 2-core machine (seen).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def import_tensorflow_quietly() -> None:
    """For the commands that load TensorFlow (every flow, `predict`, `export`, `reregister`):
    import it with file descriptor 2 pointed at a temporary file (its C++ start-up lines bypass
    Python), then pass on to stderr every captured line but the known start-up ones, also when
    the import fails (its reasons are among them). `MULTITASK_DEBUG=1`, or no stderr: as is."""
    if "tensorflow" in sys.modules or sys.stderr is None or os.environ.get("MULTITASK_DEBUG"):
        return
    try:
        saved = os.dup(2)
    except OSError:  # descriptor 2 is closed: nothing to keep clean
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  (here, so that its start-up lines land in `captured`)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not any(known in line for known in TENSORFLOW_START_UP):
                    sys.stderr.write(line + "\n")


def run_config(dataset: str | None = None, preset: str = "default", epochs: int | None = None,
               config: Path | None = None, sets: list[str] | None = None) -> RunConfig:
    """The layered config (preset, file, --set, flags), or exit 2 with one line."""
    overrides: dict[str, Any] = {}
    if dataset is not None:
        overrides["data"] = {"dataset": dataset}
    if epochs is not None:
        overrides["train"] = {"epochs": epochs}
    try:
        loaded = load_config(preset, config, sets or [], overrides)
        parse_spec(loaded.data.dataset)
    except UserError as exc:
        fail(str(exc))
    quiet_environment()
    return loaded


def run_flow(flow: Any, **parameters: Any) -> Any:
    """Call a flow; a user error or a full disk ends the command with one line.

    The workspace is checked first, so a bad one fails before Prefect starts a temporary server."""
    try:
        workspace.ensure()
        import_tensorflow_quietly()  # the steps load it: its start-up lines stay off stderr
        return flow(**parameters)
    except UserError as exc:
        fail(str(exc))
    except Exception as exc:
        if (problem := storage_problem(exc)) is None:
            raise
        fail(problem)
    finally:
        if "prefect" in sys.modules:
            drain_prefect()


def drain_prefect(timeout: float = DRAIN_SECONDS) -> None:
    """Send Prefect's queued events and API logs now, within `timeout`, while the interpreter is whole.

    Prefect otherwise sends them from an exit hook that waits with no time limit: a worker that died
    (as its threads did when TensorFlow Datasets was imported mid-flow, see `tasks`) hung the command
    after its work was done. `EventsWorker.drain_all` stops and drains every Prefect queue service, the
    log worker's too (they share one registry); a later flow in the same process starts new ones."""
    from prefect.events.worker import EventsWorker

    _, busy = EventsWorker.drain_all(timeout=timeout, at_exit=False)
    if busy:
        typer.echo(f"warning: Prefect's event and log workers did not finish within {timeout:.0f} s; the flow "
                   "run's last events or logs may be missing from the Prefect UI", err=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
