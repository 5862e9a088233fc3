"""From a file name in the annotations to the image file: one spelling for one path, never outside
the dataset folder, and each file named once."""

from __future__ import annotations

import posixpath
from pathlib import Path

from multitask.datasets.annotated import AnnotatedObject
from multitask.errors import DataError


def normalised(filename: str) -> str:
    """The name with `.` and `..` steps folded: the same spelling for the same path."""
    return posixpath.normpath(filename)


def inside(root: Path, filename: str, where: str) -> Path:
    """The image's path, refused when it leaves the dataset folder (`..`, absolute, a symlink out)."""
    path = Path(filename)
    if path.is_absolute():
        raise DataError(f"{where}: file name {filename!r} is absolute; names are relative to {root}")
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DataError(f"{where}: file name {filename!r} leads outside the dataset folder {root} "
                        f"(to {resolved})")
    return resolved


def check_named_once(root: Path, annotations: dict[str, list[AnnotatedObject]]) -> None:
    """One image file under two names (`a.png`, `./a.png`, `sub/../a.png`, a symbolic or hard link,
    another case on a case-insensitive disk) is an error: the file is known by the device and
    inode of the path that will be read."""
    seen: dict[object, tuple[str, str]] = {}  # the file -> (its first name, where)
    for filename, objects in annotations.items():
        where = objects[0].where if objects else filename
        real = inside(root, normalised(filename), where)
        try:
            st = real.stat()
            key: object = (st.st_dev, st.st_ino)
        except OSError:  # missing: reported with its row when its size is read
            key = real
        if key in seen:
            first, first_where = seen[key]
            raise DataError(f"{first_where} and {where} name the same image file {real.relative_to(root.resolve())} "
                            f"(as {first!r} and {filename!r}): name each image once")
        seen[key] = (filename, where)
