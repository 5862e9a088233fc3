"""Read a user's folder dataset: `annotations.csv` or COCO `annotations.json`, checked row by row.

Everything is checked before anything is written, and every error names the file and the row
or image, so a bad folder fails at once and leaves nothing behind. File names are normalised
first (`./a.png` and `sub/../a.png` are `a.png`), and one image named two ways is an error:
otherwise it would be two examples, each with its own split, and a test image could be trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from multitask.config import DEFAULT_MAX_PIXELS
from multitask.datasets.annotated import AnnotatedObject
from multitask.datasets.coco_annotations import read_coco
from multitask.datasets.csv_annotations import read_csv
from multitask.datasets.image_paths import check_named_once, inside, normalised
from multitask.errors import DataError
from multitask.images import upright_size

CSV_NAME, COCO_NAME = "annotations.csv", "annotations.json"


@dataclass(frozen=True)
class Example:
    """One image with one object; `box` is [ymin, xmin, ymax, xmax] in [0, 1]."""

    filename: str
    label: str
    box: tuple[float, float, float, float]
    split: str
    where: str = ""  # "annotations.csv row 7", for errors raised while the records are built


def stable_split(filename: str) -> str:
    """80/10/10 by a hash of the file name: stable across runs, machines and row order."""
    bucket = int(hashlib.sha256(filename.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else "validation" if bucket == 8 else "test"


def _image_size(root: Path, filename: str, where: str, max_pixels: int) -> tuple[int, int]:
    path = inside(root, filename, where)
    if not path.is_file():
        raise DataError(f"{where}: image file {root / filename} does not exist")
    try:
        return upright_size(path, max_pixels)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc


def _box(obj: AnnotatedObject, filename: str, size: tuple[int, int]) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = obj.pixels
    width, height = size
    if min(obj.pixels) < 0:
        raise DataError(f"{obj.where} ({filename}): negative box coordinate in {list(obj.pixels)}")
    if xmin >= xmax or ymin >= ymax:
        raise DataError(f"{obj.where} ({filename}): box needs xmin < xmax and ymin < ymax, got {list(obj.pixels)}")
    if xmax > width or ymax > height:
        raise DataError(f"{obj.where} ({filename}): box {list(obj.pixels)} lies outside the "
                        f"{width}x{height} image")
    return (ymin / height, xmin / width, ymax / height, xmax / width)


def _one_object(filename: str, objects: list[AnnotatedObject], multi_object: str) -> AnnotatedObject | None:
    if len(objects) == 1:
        return objects[0]
    if multi_object == "largest":
        return max(objects, key=lambda o: (o.pixels[2] - o.pixels[0]) * (o.pixels[3] - o.pixels[1]))
    if multi_object == "skip":
        return None
    raise DataError(f"image {filename} has {len(objects)} objects ({objects[0].where}, {objects[1].where}); "
                    f"one per image is expected (set data.multi_object = \"largest\" or \"skip\")")


def _check_classes(examples: list[Example], where: Path) -> list[str]:
    classes = sorted({e.label for e in examples})
    if len(classes) < 2:
        raise DataError(f"{where}: only one class ({classes[0]!r}); a classifier needs at least 2")
    trained = {e.label for e in examples if e.split == "train"}
    untrained = [c for c in classes if c not in trained]
    if untrained:
        raise DataError(f"{where}: class(es) {', '.join(map(repr, untrained))} have no training example")
    return classes


def read_folder(root: Path, multi_object: str = "error",
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[Example], list[str]]:
    """All examples of a folder dataset and its sorted class names; raises `DataError` on bad input."""
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist or is not a folder")
    csv_path, coco_path = root / CSV_NAME, root / COCO_NAME
    try:
        if csv_path.is_file():
            annotations, splits = read_csv(csv_path)
            source = csv_path
        elif coco_path.is_file():
            annotations, splits = read_coco(coco_path), {}
            source = coco_path
        else:
            raise DataError(f"{root} has neither {CSV_NAME} nor {COCO_NAME}")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotations in {root}: {exc}") from exc
    check_named_once(root, annotations)
    examples = []
    for filename, objects in annotations.items():
        chosen = _one_object(filename, objects, multi_object)
        if chosen is None:
            continue
        name = normalised(filename)
        size = _image_size(root, name, chosen.where, max_pixels)
        split = splits.get(filename) or stable_split(name)
        examples.append(Example(name, chosen.label, _box(chosen, name, size), split, chosen.where))
    return examples, _check_classes(examples, source)
