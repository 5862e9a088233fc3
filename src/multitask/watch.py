"""Has a dataset changed since the last look? Names, sizes and modification times first (no
file read); the content hash only when those changed, so a `touch` or a copy of the same bytes
is seen but is no change.

The last look of each dataset spec is kept in `state_dir` (one small JSON file per spec).
Only folder datasets change on disk: `shapes` is fixed by its settings and a `tfds:` dataset
by its version, so they never change.
"""

from __future__ import annotations

import json
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


def look(spec: str, state_dir: Path) -> Look:
    parsed = parse(spec)
    if parsed.kind != "folder" or parsed.path is None:
        return Look(spec=spec, changed=False, old=None, new=None, hashed=False)
    if not parsed.path.is_dir():
        raise DataError(f"{spec}: no such folder")
    state_path = Path(state_dir) / f"{digest(spec)[:16]}.json"
    last = json.loads(state_path.read_text()) if state_path.exists() else None
    listing = hash_stat(parsed.path)
    if last is not None and last["listing"] == listing:
        return Look(spec=spec, changed=False, old=last["fingerprint"], new=last["fingerprint"], hashed=False)
    fingerprint = hash_tree(parsed.path)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(state_path, {"spec": spec, "listing": listing, "fingerprint": fingerprint})
    old = last["fingerprint"] if last else None
    return Look(spec=spec, changed=old is not None and old != fingerprint, old=old, new=fingerprint, hashed=True)
