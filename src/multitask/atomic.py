"""Write files and folders so that a reader sees either nothing or the complete result.

Every write is flushed to the disk (`fsync`) before its rename, and the folder after it: without
that, a power loss can leave the new name pointing at an empty file (a file system may commit the
rename before the data).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _temp_sibling(path: Path) -> Path:
    """A hidden name beside `path` with the same suffixes (Keras saves models only to `*.keras`,
    weights only to `*.weights.h5`)."""
    stem, dot, suffixes = path.name.partition(".")
    return path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{dot}{suffixes}")


def sync_file(path: Path) -> None:
    """Flush a file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new name in it) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (a folder about to be renamed into place)."""
    for folder, _, files in os.walk(root):
        for name in files:
            sync_file(Path(folder) / name)
        sync_dir(Path(folder))


def write_with(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` fills a temporary sibling, which then replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        write(tmp)
        sync_file(tmp)
        os.replace(tmp, path)
        sync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_png(path: Path, figure: Any) -> Path:
    """A matplotlib figure as a PNG (100 dpi, tight), written atomically."""
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100, bbox_inches="tight")
    return write_bytes(path, png.getvalue())


def write_json(path: Path, obj: Any) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def create_json(path: Path, obj: Any) -> bool:
    """Write `obj` to `path` only if `path` does not exist: True if this call created it.

    The file appears whole (written beside it, then hard-linked into place), so a reader never
    sees it empty, as it would between an exclusive create and the write that fills it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        tmp.write_text(json.dumps(obj))
        sync_file(tmp)
        os.link(tmp, path)
        sync_dir(path.parent)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def replace_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `final` in one rename.

    On failure the temporary folder is removed and `final` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        sync_tree(tmp)
        if final.exists():
            old = _temp_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        sync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
