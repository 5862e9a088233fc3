"""The MLflow store: one client per tracking URI, configured once per process.

The workspace's sqlite store (`.multitask/mlflow.db`) unless `$MLFLOW_TRACKING_URI` is set;
a new sqlite store is opened under a file lock (its first use migrates the schema).
"""

from __future__ import annotations

import logging
import os

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from multitask import file_lock, workspace

logging.getLogger("mlflow").setLevel(logging.WARNING)

_CLIENTS: dict[str, MlflowClient] = {}  # tracking URI -> a client whose store is open (and migrated)


def _open_sqlite_store(uri: str) -> MlflowClient:
    """Open a sqlite store under a file lock: its first use runs schema migrations, and two
    processes migrating one new database at once break it ("table _alembic_tmp_... exists")."""
    with file_lock.exclusive(workspace.ensure() / "mlflow.db.lock", "the MLflow store's first opening"):
        c = MlflowClient(tracking_uri=uri)  # opens the tracking store
        c.search_registered_models(max_results=1)  # opens the registry store
    return c


def client() -> MlflowClient:
    """A client for the workspace's store (or `$MLFLOW_TRACKING_URI` when the user set it).

    MLflow's global URI (used by `mlflow.start_run`, `log_model`, artifact downloads) is set
    only when the store changes, e.g. a test or a flow that switches workspaces.
    """
    uri = workspace.tracking_uri()
    if mlflow.get_tracking_uri() != uri:
        user_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        if user_uri is None:
            # MLflow also exports the URI to the environment; undo that, or a later workspace in
            # this process (and every subprocess) would silently keep writing to this store.
            os.environ.pop("MLFLOW_TRACKING_URI", None)
    if uri not in _CLIENTS:
        _CLIENTS[uri] = _open_sqlite_store(uri) if uri.startswith("sqlite:") else MlflowClient(tracking_uri=uri)
    return _CLIENTS[uri]


def experiment_id(c: MlflowClient, name: str) -> str:
    """One experiment per model name. With the workspace's store, artifacts go to the workspace
    (not `./mlruns`); a tracking server keeps them where it was told (served through it)."""
    experiment = c.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    local = c.tracking_uri.startswith("sqlite:")
    try:
        return c.create_experiment(name, artifact_location=f"{workspace.artifacts_uri()}/{name}" if local else None)
    except MlflowException:  # a concurrent run created it first
        created = c.get_experiment_by_name(name)
        if created is None:
            raise
        return created.experiment_id
