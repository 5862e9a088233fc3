"""Has a dataset changed since the last look? Names, sizes and modification times first (no
file read); the content hash only when those changed, so a `touch` or a copy of the same bytes
is seen but is no change.

The last look of each dataset spec is kept in `state_dir` (one small JSON file per spec).
Only folder datasets change on disk: `shapes` is fixed by its settings and a `tfds:` dataset
by its version, so they never change.

At least once: `look` does not move the state forward; the caller `remember`s a look only
after it has announced the change, so a crash or an event that did not go out means the next
look sees the same change again. An unreadable state file counts as no previous look (with a
warning), and a file that vanishes while the folder is scanned makes the scan start again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from multitask import atomic
from multitask.datasets.spec import parse
from multitask.errors import DataError
from multitask.fingerprint import digest, hash_stat, hash_tree


class Look(BaseModel):
    """One look at a dataset: `changed` against the previous look (never on the first)."""

    model_config = ConfigDict(frozen=True)

    spec: str
    changed: bool
    old: str | None  # the content fingerprint seen last time; None on the first look
    new: str | None  # None: nothing on disk to watch (`shapes`, `tfds:`)
    hashed: bool  # whether the contents were read this time
    listing: str | None = None  # names, sizes and times seen, remembered with `new`


logger = logging.getLogger(__name__)
SCANS = 5  # attempts at a scan while files vanish under it


def look(spec: str, state_dir: Path) -> Look:
    """Look at a dataset and compare with the last remembered look; remembers nothing."""
    parsed = parse(spec)
    if parsed.kind != "folder" or parsed.path is None:
        return Look(spec=spec, changed=False, old=None, new=None, hashed=False)
    if not parsed.path.is_dir():
        raise DataError(f"{spec}: no such folder")
    last = _last_look(_state_path(spec, state_dir))
    listing = _scan(hash_stat, parsed.path)
    if last is not None and last["listing"] == listing:
        return Look(spec=spec, changed=False, old=last["fingerprint"], new=last["fingerprint"], hashed=False,
                    listing=listing)
    fingerprint = _scan(hash_tree, parsed.path)
    old = last["fingerprint"] if last else None
    return Look(spec=spec, changed=old is not None and old != fingerprint, old=old, new=fingerprint, hashed=True,
                listing=listing)


def remember(seen: Look, state_dir: Path) -> None:
    """Make `seen` the last look of its dataset (after its change, if any, was announced). A look
    that read no content saw what was remembered already."""
    if seen.new is None or seen.listing is None or not seen.hashed:
        return
    atomic.write_json(_state_path(seen.spec, state_dir),
                      {"spec": seen.spec, "listing": seen.listing, "fingerprint": seen.new})


def _state_path(spec: str, state_dir: Path) -> Path:
    return Path(state_dir) / f"{digest(spec)[:16]}.json"


def _last_look(path: Path) -> dict | None:
    """The remembered look, or None: none yet, or a file that cannot be read as one."""
    try:
        last = json.loads(path.read_text())
        if isinstance(last, dict) and isinstance(last.get("listing"), str) and isinstance(last.get("fingerprint"), str):
            return last
        problem = "not a remembered look"
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problem = str(exc)
    logger.warning("the last look at this dataset (%s) is unreadable (%s): taking this one as the first", path,
                   problem)
    return None


def _scan(scan: Callable[[Path], str], root: Path) -> str:
    """`scan(root)`, started again when a file vanishes under it (a copy or a move in progress);
    if files keep vanishing, a TimeoutError: a passing fault, which the watch step retries."""
    for attempt in range(1, SCANS + 1):
        try:
            return scan(root)
        except FileNotFoundError as exc:
            missing = exc.filename
        time.sleep(0.2 * attempt)
    raise TimeoutError(f"files kept vanishing while {root} was scanned ({SCANS} times; last {missing})")
