"""One model version's tags and aliases, read straight from the store without importing MLflow.

A fully cached run only has to ask "is this version still registered, from the same trained
model?" and "which aliases does it carry?". Importing MLflow and opening its client costs
seconds, more than the rest of such a run, so those two reads go straight to the store:
- the workspace's sqlite file (or any `sqlite:///PATH` tracking URI), read-only, with the
  same filters as MLflow's own SQL store (the default workspace, soft-deleted versions hidden);
- a tracking server (`http://` or `https://`) through the REST API that MLflow's client uses,
  with the same credentials (`MLFLOW_TRACKING_USERNAME`/`_PASSWORD` or `MLFLOW_TRACKING_TOKEN`).
Everything else (other stores, MLflow workspaces, custom auth or TLS settings, a store whose
schema differs) goes through MLflow's client, so the answer is always MLflow's answer.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import ssl
import urllib.error
import urllib.parse
import urllib.request
from http import HTTPStatus
from pathlib import Path

from multitask import workspace
from multitask.records import ModelVersion
from multitask.registry.tags import TRAIN_FINGERPRINT_TAG, Found

# Settings that change how MLflow's client reaches its store: with any of them, ask MLflow.
MLFLOW_ONLY_SETTINGS = ("MLFLOW_WORKSPACE", "MLFLOW_WORKSPACE_STORE_URI", "MLFLOW_ENABLE_WORKSPACES",
                        "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_INSECURE_TLS",
                        "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH")
DEFAULT_WORKSPACE = "default"  # MLflow's single-tenant workspace name, a column of its tables
DELETED_STAGE = "Deleted_Internal"  # MLflow's SQL store soft-deletes a version with this stage
WAIT_SECONDS = 30  # for a locked sqlite file, or a server's answer


class AskMlflow(Exception):
    """This store cannot be read directly; MLflow's client answers instead."""


def version(name: str, number: str) -> Found | None:
    """The version's tags and aliases, or None when the store has no such version.

    Any other failure (a locked database, a server that does not answer) propagates.
    """
    uri = workspace.tracking_uri()
    try:
        if any(os.environ.get(setting) for setting in MLFLOW_ONLY_SETTINGS):
            raise AskMlflow
        if uri.startswith("sqlite:///") and "?" not in uri:
            return _from_sqlite(Path(uri.removeprefix("sqlite:///")), name, int(number))
        if uri.startswith(("http://", "https://")):
            return _from_server(uri, name, number)
        raise AskMlflow
    except AskMlflow:
        return _from_mlflow(name, number)


def version_matches(mv: ModelVersion) -> bool:
    """True when the registry still holds this version, made from the same trained model."""
    found = version(mv.name, mv.version)
    return found is not None and found.tags.get(TRAIN_FINGERPRINT_TAG) == mv.fingerprint


def aliases(name: str, number: str) -> list[str]:
    found = version(name, number)
    if found is None:
        raise LookupError(f"no registered model version {name}/{number}")
    return found.aliases


def _from_sqlite(path: Path, name: str, number: int) -> Found | None:
    """Read-only (a missing file is not created); `sqlite3.OperationalError` "database is
    locked" propagates, to be retried; a schema MLflow has changed is left to MLflow."""
    if not path.is_file():
        raise AskMlflow
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=WAIT_SECONDS)
    try:
        where = "name = ? AND version = ? AND workspace = ?"
        key = (name, number, DEFAULT_WORKSPACE)
        if db.execute(f"SELECT 1 FROM model_versions WHERE {where} AND current_stage != ?",
                      (*key, DELETED_STAGE)).fetchone() is None:
            return None
        tags = db.execute(f"SELECT key, value FROM model_version_tags WHERE {where}", key).fetchall()
        names = db.execute(f"SELECT alias FROM registered_model_aliases WHERE {where}", key).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):  # "no such table" / "no such column": not the schema we know
            raise AskMlflow from exc
        raise
    finally:
        db.close()
    return Found(tags=dict(tags), aliases=sorted(alias for (alias,) in names))


def _credentials() -> dict[str, str]:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _from_server(uri: str, name: str, number: str) -> Found | None:
    """GET model-versions/get, as MLflow's client does. 404 RESOURCE_DOES_NOT_EXIST is None;
    a refused connection or a 5xx answer raises ConnectionError (transient, retried); a TLS
    failure is left to MLflow's client, which has its own certificate settings."""
    query = urllib.parse.urlencode({"name": name, "version": number})
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/model-versions/get?{query}",
                                     headers=_credentials())
    try:
        with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
            body = json.load(response)["model_version"]
    except urllib.error.HTTPError as exc:
        error = _error_code(exc)
        if exc.code == HTTPStatus.NOT_FOUND and error == "RESOURCE_DOES_NOT_EXIST":
            return None
        if exc.code >= 500 or exc.code == HTTPStatus.TOO_MANY_REQUESTS:
            raise ConnectionError(f"MLflow server {uri} answered {exc.code} {error}") from exc
        raise RuntimeError(f"MLflow server {uri} refused reading {name}/{number}: {exc.code} {error}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            raise AskMlflow from exc
        raise ConnectionError(f"MLflow server {uri} does not answer: {exc.reason}") from exc
    tags = {tag["key"]: tag.get("value", "") for tag in body.get("tags", [])}
    return Found(tags=tags, aliases=sorted(body.get("aliases", [])))


def _error_code(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error_code", ""))
    except (ValueError, OSError, AttributeError):
        return ""


def _from_mlflow(name: str, number: str) -> Found | None:
    # Imported here, not at the top: MLflow takes seconds to import, which this module exists to avoid.
    from multitask.registry.versions import tags_and_aliases

    return tags_and_aliases(name, number)
