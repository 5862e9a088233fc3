"""The order the suite runs its files in (heaviest first, for `--dist loadfile`), and
`--record-durations`, which measures them. Loaded by conftest.py as a plugin."""

from __future__ import annotations

import json
import math
from pathlib import Path

from multitask import atomic

DURATIONS = Path(__file__).with_name("durations.json")  # seconds per test file, from `pytest --record-durations`


def pytest_collection_modifyitems(items) -> None:
    """Order the files by the seconds they took when last recorded (`DURATIONS`), longest first; a
    file not recorded yet goes first, as it may be long.

    `--dist loadfile` hands whole files to the workers in this order (the Makefile passes
    `--no-loadscope-reorder`, or xdist would order them by test count alone). A long file handed
    out last keeps one worker busy while the other has nothing left: started first, it overlaps
    with the short ones. Within a file the order stays as written (the sort is stable). Counting
    tests and markers instead put a 90-s file of four tests last.
    """
    seconds = _recorded()
    items.sort(key=lambda item: -seconds.get(_file_of(item), math.inf))


def _recorded() -> dict[str, float]:
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


def _file_of(item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each file's seconds (setup, call and teardown of its tests) into {DURATIONS.name}; "
                          "run whole files (no -k), or their partial times are written")


def pytest_configure(config):
    if config.getoption("--record-durations") and not hasattr(config, "workerinput"):  # xdist's controller
        config.pluginmanager.register(_FileSeconds(), "file-seconds")


class _FileSeconds:
    """Adds up each file's test seconds (xdist's controller sees every worker's reports) and
    writes them into `DURATIONS`, keeping the files that did not run (`-m "not server"`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        file = _file_of(report)
        self.seconds[file] = self.seconds.get(file, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        recorded = _recorded()
        recorded.update({file: round(total, 1) for file, total in self.seconds.items()})
        atomic.write_json(DURATIONS, recorded)
