"""Where everything lives: `.multitask/` in the current directory, or `$MULTITASK_HOME`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from multitask.errors import WorkspaceError


def root() -> Path:
    return Path(os.environ.get("MULTITASK_HOME") or ".multitask").expanduser().resolve()


def ensure(path: Path | None = None) -> Path:
    """Create a workspace folder (default: the root) and check that it is writable.

    The probe file has a name of its own in each call: runs started together check one workspace at
    the same moment, and with one shared name one run removed the file the other was about to."""
    path = path or root()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise WorkspaceError(f"workspace {path} is not writable: {exc.strerror or exc}") from exc
    return path


def tfds_dir() -> Path:
    return root() / "tfds"


def step_dir(step: str, key: str) -> Path:
    """The output folder of one cached step, named by its cache key."""
    return root() / "steps" / step / key[:24]


def prefect_results_dir() -> Path:
    return root() / "prefect-results"


def locks_dir() -> Path:
    return root() / "locks"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root() / 'mlflow.db'}"


def artifacts_uri() -> str:
    return (root() / "mlartifacts").as_uri()


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder inside the workspace (same file system: renames stay atomic), removed after."""
    with tempfile.TemporaryDirectory(dir=ensure(), prefix=f".{prefix}-") as tmp:
        yield Path(tmp)
