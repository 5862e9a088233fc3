"""`registry.peek` reads a version's tags and aliases from a real MLflow sqlite store without MLflow,
and answers exactly as MLflow's client does (the tracking server's REST path: tests/test_stack.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from multitask.errors import is_transient
from multitask.records import ModelVersion
from multitask.registry import peek

NAME = "peeked"


@pytest.fixture(scope="module")
def store(module_workspace):
    """A real store: two versions with tags and aliases, then the second deleted, a third added."""
    from multitask import registry

    c = registry.client()
    c.create_registered_model(NAME)
    for n in (1, 2, 3):
        tags = {peek.TRAIN_FINGERPRINT_TAG: f"fp{n}", "n": str(n)}
        c.create_model_version(NAME, (module_workspace / f"model-{n}").as_uri(), tags=tags)
    c.set_registered_model_alias(NAME, "champion", "1")
    c.set_registered_model_alias(NAME, "challenger", "3")
    c.set_registered_model_alias(NAME, "other", "1")
    c.delete_model_version(NAME, "2")
    return module_workspace


@pytest.fixture
def in_store(store, monkeypatch):
    monkeypatch.setenv("MULTITASK_HOME", str(store))
    return store


@pytest.mark.parametrize(("name", "number"), [(NAME, "1"), (NAME, "2"), (NAME, "3"), (NAME, "9"), ("absent", "1")])
def test_sqlite_answers_as_mlflow_does(in_store, name, number):
    direct = peek._from_sqlite(in_store / "mlflow.db", name, int(number))
    assert direct == peek._from_mlflow(name, number)
    assert (direct is None) == ((name, number) not in {(NAME, "1"), (NAME, "3")})


def test_tags_aliases_and_fingerprints(in_store):
    assert peek.version(NAME, "1") == peek.Found(tags={peek.TRAIN_FINGERPRINT_TAG: "fp1", "n": "1"},
                                                 aliases=["champion", "other"])
    assert peek.aliases(NAME, "3") == ["challenger"]
    def matches(version: str, fingerprint: str) -> bool:
        return peek.version_matches(ModelVersion(name=NAME, version=version, run_id="", aliases=[],
                                                 fingerprint=fingerprint))

    assert matches("3", "fp3") and not matches("3", "fp1")
    assert not matches("2", "fp2")  # deleted
    with pytest.raises(LookupError, match="peeked/2"):
        peek.aliases(NAME, "2")


def test_a_locked_database_is_a_transient_fault(in_store, monkeypatch):
    monkeypatch.setattr(peek, "WAIT_SECONDS", 0.1)
    writer = sqlite3.connect(in_store / "mlflow.db")
    writer.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked") as raised:
            peek.version(NAME, "1")
    finally:
        writer.rollback()
        writer.close()
    assert is_transient(raised.value)


def test_a_store_not_yet_created_or_of_another_schema_is_left_to_mlflow(tmp_path):
    with pytest.raises(peek.AskMlflow):
        peek._from_sqlite(tmp_path / "mlflow.db", NAME, 1)
    assert not (tmp_path / "mlflow.db").exists()  # read-only: never created here
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE model_versions (name TEXT)")
    other.close()
    with pytest.raises(peek.AskMlflow):
        peek._from_sqlite(tmp_path / "other.db", NAME, 1)


def test_peeking_imports_no_mlflow(store):
    code = ("import sys; from multitask.registry import peek; "
            f"print(peek.aliases({NAME!r}, '1'), sorted({{'mlflow', 'sqlalchemy'}} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"MULTITASK_HOME": str(store), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['champion',", "'other']", "[]"]
