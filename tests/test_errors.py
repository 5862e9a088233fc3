import sqlite3

import pytest

from multitask.errors import ConfigError, DataError, is_transient


@pytest.mark.parametrize("exc", [
    OSError("disk hiccup"), ConnectionError("reset"), TimeoutError(),
    sqlite3.OperationalError("database is locked"), RuntimeError("(sqlite3) database is locked"),
])
def test_transient_faults_are_retried(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    ValueError("bad"), DataError("bad row"), ConfigError("bad key"), FileNotFoundError("x"),
    PermissionError("x"), RuntimeError("NaN loss"), sqlite3.OperationalError("no such table"),
])
def test_permanent_errors_are_not_retried(exc):
    assert not is_transient(exc)


def test_cause_chain_is_followed():
    try:
        try:
            raise ConnectionError("refused")
        except ConnectionError as inner:
            raise RuntimeError("registry call failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
