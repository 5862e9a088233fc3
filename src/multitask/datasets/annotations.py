"""Read a user's folder dataset: `annotations.csv` or COCO `annotations.json`, checked row by row.

Everything is checked before anything is written, and every error names the file and the row
or image, so a bad folder fails at once and leaves nothing behind. File names are normalised
first (`./a.png` and `sub/../a.png` are `a.png`), and one image named two ways is an error:
otherwise it would be two examples, each with its own split, and a test image could be trained on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import posixpath
from dataclasses import dataclass
from pathlib import Path

from multitask.config import DEFAULT_MAX_PIXELS
from multitask.errors import DataError
from multitask.images import upright_size
from multitask.records import SPLITS

CSV_NAME, COCO_NAME = "annotations.csv", "annotations.json"
CSV_COLUMNS = ("filename", "label", "xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class Example:
    """One image with one object; `box` is [ymin, xmin, ymax, xmax] in [0, 1]."""

    filename: str
    label: str
    box: tuple[float, float, float, float]
    split: str
    where: str = ""  # "annotations.csv row 7", for errors raised while the records are built


@dataclass(frozen=True)
class _Object:
    label: str
    pixels: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    where: str  # "row 7" or "annotation id 12", for error messages


def stable_split(filename: str) -> str:
    """80/10/10 by a hash of the file name: stable across runs, machines and row order."""
    bucket = int(hashlib.sha256(filename.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else "validation" if bucket == 8 else "test"


def _normalised(filename: str) -> str:
    """The name with `.` and `..` steps folded: the same spelling for the same path."""
    return posixpath.normpath(filename)


def _inside(root: Path, filename: str, where: str) -> Path:
    """The image's path, refused when it leaves the dataset folder (`..`, absolute, a symlink out)."""
    path = Path(filename)
    if path.is_absolute():
        raise DataError(f"{where}: file name {filename!r} is absolute; names are relative to {root}")
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DataError(f"{where}: file name {filename!r} leads outside the dataset folder {root} "
                        f"(to {resolved})")
    return resolved


def _image_size(root: Path, filename: str, where: str, max_pixels: int) -> tuple[int, int]:
    path = _inside(root, filename, where)
    if not path.is_file():
        raise DataError(f"{where}: image file {root / filename} does not exist")
    try:
        return upright_size(path, max_pixels)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc


def _box(obj: _Object, filename: str, size: tuple[int, int]) -> tuple[float, float, float, float]:
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


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {column} must be a finite number, got {text!r}")
    return value


def _rows(reader: csv.DictReader, path: Path):
    """(line, row) of each data row; a malformed row (a field over the csv module's size limit, a
    NUL byte) is one error naming its line."""
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path.name} row {reader.line_num + 1}: not readable as CSV ({exc})") from None
        yield reader.line_num, row


def _read_csv(path: Path) -> tuple[dict[str, list[_Object]], dict[str, str]]:
    objects: dict[str, list[_Object]] = {}
    splits: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            fieldnames = reader.fieldnames
        except csv.Error as exc:
            raise DataError(f"{path.name} row 1: not readable as CSV ({exc})") from None
        if fieldnames is None:
            raise DataError(f"{path} is empty: expected a header {','.join(CSV_COLUMNS)}[,split]")
        header = [name.strip() for name in fieldnames]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                            f"{','.join(CSV_COLUMNS)}[,split], got {','.join(header)}")
        reader.fieldnames = header
        for line, row in _rows(reader, path):
            where = f"{path.name} row {line}"
            filename = (row["filename"] or "").strip()
            label = (row["label"] or "").strip()
            if not filename or not label:
                raise DataError(f"{where}: filename and label must not be empty")
            xmin, ymin, xmax, ymax = (_number(row[c], c, where) for c in ("xmin", "ymin", "xmax", "ymax"))
            objects.setdefault(filename, []).append(_Object(label, (xmin, ymin, xmax, ymax), where))
            if "split" in header:
                split = (row["split"] or "").strip()
                if split not in SPLITS:
                    raise DataError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
                splits[filename] = split
    if not objects:
        raise DataError(f"{path} has a header but no rows")
    return objects, splits


def _read_coco(path: Path) -> dict[str, list[_Object]]:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise DataError(f"{path} is nested too deeply to be COCO annotations") from None
    if not isinstance(coco, dict):
        raise DataError(f"{path}: expected a JSON object with images, categories and annotations")
    images = _images(_objects(coco, "images", ("id", "file_name"), path), path)
    categories = {c["id"]: str(c["name"]) for c in _objects(coco, "categories", ("id", "name"), path)}
    annotations = _objects(coco, "annotations", (), path)
    if not images:
        raise DataError(f"{path} lists no images")
    objects: dict[str, list[_Object]] = {name: [] for name in images.values()}
    for index, annotation in enumerate(annotations):
        where = f"{path.name} annotation {annotation.get('id', f'#{index}')}"
        if annotation.get("image_id") not in images:
            raise DataError(f"{where}: unknown image_id {annotation.get('image_id')!r}")
        if annotation.get("category_id") not in categories:
            raise DataError(f"{where}: unknown category_id {annotation.get('category_id')!r} "
                            f"(known: {sorted(categories, key=str)})")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DataError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (_number(v, "bbox", where) for v in bbox)
        objects[images[annotation["image_id"]]].append(
            _Object(categories[annotation["category_id"]], (x, y, x + w, y + h), where))
    unannotated = [name for name, objs in objects.items() if not objs]
    if unannotated:
        raise DataError(f"{path}: {len(unannotated)} image(s) have no annotation, e.g. {unannotated[0]}")
    return objects


def _objects(coco: dict, key: str, required: tuple[str, ...], path: Path) -> list[dict]:
    """`coco[key]`: a list of JSON objects, each with the `required` fields and hashable ids."""
    items = coco.get(key)
    if not isinstance(items, list):
        problem = "missing" if items is None else "not a list"
        raise DataError(f"{path}: COCO needs images[id, file_name], categories[id, name] and "
                        f"annotations[image_id, category_id, bbox]; {key!r} is {problem}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path.name} {key} #{index}: must be a JSON object, got {str(item)[:60]!r}")
        missing = [field for field in required if field not in item]
        if missing:
            raise DataError(f"{path.name} {key} #{index}: missing {', '.join(missing)}")
        if "id" in required and not isinstance(item["id"], int | str):
            raise DataError(f"{path.name} {key} #{index}: id must be a number or a string, got {item['id']!r}")
    return items


def _images(items: list[dict], path: Path) -> dict[int | str, str]:
    """Image id -> file name; each file name a non-empty string, each listed once."""
    images: dict[int | str, str] = {}
    first_id: dict[str, int | str] = {}
    for image in items:
        name = image["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path.name} image id {image['id']}: file_name must be a non-empty string, got {name!r}")
        if name in first_id:
            raise DataError(f"{path.name} image ids {first_id[name]} and {image['id']} name the same image file "
                            f"{name!r}: list each image once")
        first_id[name], images[image["id"]] = image["id"], name
    return images


def _one_object(filename: str, objects: list[_Object], multi_object: str) -> _Object | None:
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
            annotations, splits = _read_csv(csv_path)
            source = csv_path
        elif coco_path.is_file():
            annotations, splits = _read_coco(coco_path), {}
            source = coco_path
        else:
            raise DataError(f"{root} has neither {CSV_NAME} nor {COCO_NAME}")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotations in {root}: {exc}") from exc
    _check_named_once(root, annotations)
    examples = []
    for filename, objects in annotations.items():
        chosen = _one_object(filename, objects, multi_object)
        if chosen is None:
            continue
        name = _normalised(filename)
        size = _image_size(root, name, chosen.where, max_pixels)
        split = splits.get(filename) or stable_split(name)
        examples.append(Example(name, chosen.label, _box(chosen, name, size), split, chosen.where))
    return examples, _check_classes(examples, source)


def _check_named_once(root: Path, annotations: dict[str, list[_Object]]) -> None:
    """One image file under two names (`a.png`, `./a.png`, a symlink to it) is an error."""
    seen: dict[Path, tuple[str, str]] = {}  # the real file -> (its first name, where)
    for filename, objects in annotations.items():
        where = objects[0].where if objects else filename
        real = _inside(root, filename, where)
        if real in seen:
            first, first_where = seen[real]
            raise DataError(f"{first_where} and {where} name the same image file {real.relative_to(root.resolve())} "
                            f"(as {first!r} and {filename!r}): name each image once")
        seen[real] = (filename, where)
