"""Registered model versions: aliases, lookups by tag, promotion, tags, listings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from multitask import workspace
from multitask.errors import UserError
from multitask.records import ModelVersion
from multitask.registry.references import parse_reference
from multitask.registry.store import client
from multitask.registry.tags import TRAIN_FINGERPRINT_TAG, Found

CHALLENGER, CHAMPION = "challenger", "champion"


def record(c: MlflowClient, name: str, version: str, run_id: str | None) -> ModelVersion:
    mv = c.get_model_version(name, version)
    return ModelVersion(name=name, version=str(version), run_id=run_id or "", aliases=sorted(mv.aliases),
                        fingerprint=mv.tags.get(TRAIN_FINGERPRINT_TAG, ""))


def ensure_aliases(c: MlflowClient, name: str, version: str, first_is_champion: bool = True) -> None:
    """`challenger` on the newest registered version, `champion` on the first one ever.

    Aliases move only after the version and its model exist, so an alias never points at a
    missing model; calling this again after a failure repairs what was left undone.
    """
    aliases = c.get_registered_model(name).aliases
    newest = max(int(v.version) for v in c.search_model_versions(f"name = '{name}'"))
    if int(version) == newest and aliases.get(CHALLENGER) != str(version):
        c.set_registered_model_alias(name, CHALLENGER, str(version))
    if first_is_champion and CHAMPION not in aliases:
        c.set_registered_model_alias(name, CHAMPION, str(version))


def not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def tags_and_aliases(name: str, number: str) -> Found | None:
    """The version's tags and aliases through MLflow's client, or None when it is not registered:
    what `peek` answers for a store it cannot read directly."""
    try:
        mv = client().get_model_version(name, number)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise
    return Found(tags=dict(mv.tags), aliases=sorted(mv.aliases))


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its versions, newest first, and their aliases."""
    c = client()
    rows = []
    for rm in c.search_registered_models():
        for found in sorted(c.search_model_versions(f"name = '{rm.name}'"), key=lambda v: -int(v.version)):
            mv = c.get_model_version(rm.name, found.version)  # search results carry no aliases
            rows.append({"name": rm.name, "version": str(mv.version), "aliases": sorted(mv.aliases),
                         "accuracy": mv.tags.get("test_accuracy"), "mean_iou": mv.tags.get("test_mean_iou"),
                         "created": mv.creation_timestamp})
    return rows


def find_version(name: str, tags: dict[str, str]) -> ModelVersion | None:
    """The newest version of `name` carrying all these tags, if any.

    Errors propagate: a "database is locked" here must fail the attempt (and be retried), not
    pass for "no such version" and, in `register`, add a duplicate.
    """
    c = client()
    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = c.search_model_versions(f"name = '{name}' and {clauses}")
    newest = max(found, key=lambda mv: int(mv.version), default=None)
    return None if newest is None else record(c, name, newest.version, newest.run_id)


def champion(name: str) -> ModelVersion | None:
    """The champion, or None. Read from the model's aliases: a model without that alias answers
    INVALID_PARAMETER_VALUE, not "does not exist", to `get_model_version_by_alias`."""
    c = client()
    try:
        version = c.get_registered_model(name).aliases.get(CHAMPION)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise
    return None if version is None else record(c, name, version, c.get_model_version(name, version).run_id)


def preprocessing(version: ModelVersion) -> dict[str, Any]:
    """What a registered version needs around it (class names, input size, resize policy), from
    its model's metadata. Reads only the small `MLmodel` file, not the model."""
    location = client().get_model_version_download_uri(version.name, version.version)
    with workspace.scratch("mlmodel") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=str(tmp))
        except MlflowException as exc:
            raise UserError(f"{version.name}/{version.version} has no MLmodel file: {exc.message}") from exc
        return dict(mlflow.models.Model.load(local).metadata or {})


def resolve(reference: str) -> ModelVersion:
    """`NAME@ALIAS` or `NAME/VERSION` -> the version it names now (an alias may move later)."""
    name, kind, which = parse_reference(reference)
    c = client()
    try:
        mv = c.get_model_version_by_alias(name, which) if kind == "@" else c.get_model_version(name, which)
    except MlflowException as exc:
        raise UserError(f"no registered model {reference!r}: {exc.message}") from exc
    return record(c, name, mv.version, mv.run_id)


def set_tags(name: str, version: str, tags: dict[str, str]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)


def promote(name: str, version: str, tags: dict[str, str]) -> None:
    """Move `champion` to this version and record why (tags) on it, with the version it replaced
    (`champion.previous`) and when (`champion.since`, UTC).

    Reading the champion and moving it are separate calls to the registry: the caller holds the
    model's promotion lock, and has checked under it that the champion is the one it judged against.
    """
    c = client()
    c.get_model_version(name, version)  # fails clearly on an unknown version
    previous = c.get_registered_model(name).aliases.get(CHAMPION, "")
    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    set_tags(name, version, {**tags, "champion.previous": previous, "champion.since": since})
    c.set_registered_model_alias(name, CHAMPION, version)


def show(reference: str) -> dict[str, Any]:
    """One version's aliases, tags and source, as a JSON-friendly dict."""
    version = resolve(reference)
    mv = client().get_model_version(version.name, version.version)
    return {"name": mv.name, "version": str(mv.version), "aliases": sorted(mv.aliases), "run_id": mv.run_id,
            "source": mv.source, "created": mv.creation_timestamp, "tags": dict(mv.tags)}
