"""Dataset spec strings, parsed without importing TensorFlow (the CLI checks them up front).

- `shapes`: the embedded generated dataset;
- `tfds:NAME[/CONFIG][:VERSION]`: a TFDS dataset from the catalog in `tfds_catalog.py`;
- `folder:PATH`: the user's own images with `annotations.csv` or COCO `annotations.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from multitask.errors import DataError
from multitask.fingerprint import hash_tree

TFDS_NAMES = ("caltech_birds2011", "stanford_dogs", "cars196", "oxford_iiit_pet", "voc/2007")


@dataclass(frozen=True)
class Spec:
    kind: str  # "shapes" | "tfds" | "folder"
    name: str = ""  # tfds: NAME[/CONFIG]
    version: str = ""  # tfds: optional VERSION
    path: Path | None = None  # folder: the resolved folder


def parse(spec: str) -> Spec:
    """Return the parsed spec, or raise a `DataError` that says what is accepted."""
    text = spec.strip()
    if text == "shapes":
        return Spec("shapes")
    kind, sep, rest = text.partition(":")
    if kind == "folder" and sep and rest:
        return Spec("folder", path=Path(rest).expanduser().resolve())
    if kind == "tfds" and sep and rest:
        name, _, version = rest.partition(":")
        if name not in TFDS_NAMES:
            raise DataError(f"tfds dataset {name!r} is not in the catalog (known: {', '.join(TFDS_NAMES)})")
        return Spec("tfds", name=name, version=version)
    raise DataError(f"unknown dataset spec {spec!r}: expected `shapes`, `tfds:NAME` or `folder:PATH`")


def source_fingerprint(spec: str) -> str:
    """Content hash of a folder dataset's files (annotations and images); '' for other kinds.

    Generated `shapes` are fixed by their settings and library code, TFDS datasets by version.
    """
    try:
        parsed = parse(spec)
    except DataError:
        return ""  # the step that reads the spec reports it
    if parsed.kind == "folder" and parsed.path is not None and parsed.path.is_dir():
        return hash_tree(parsed.path)
    return ""
