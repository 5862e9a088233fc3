"""Read COCO `annotations.json`: images, categories and annotations, each checked by its id."""

from __future__ import annotations

import json
from pathlib import Path

from multitask.datasets.annotated import AnnotatedObject, number
from multitask.errors import DataError


def read_coco(path: Path) -> dict[str, list[AnnotatedObject]]:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise DataError(f"{path} is nested too deeply to be COCO annotations") from None
    if not isinstance(coco, dict):
        raise DataError(f"{path}: expected a JSON object with images, categories and annotations")
    images = _images(_objects(coco, "images", ("id", "file_name"), path), path)
    categories = _categories(_objects(coco, "categories", ("id", "name"), path), path)
    annotations = _objects(coco, "annotations", (), path)
    if not images:
        raise DataError(f"{path} lists no images")
    objects: dict[str, list[AnnotatedObject]] = {name: [] for name in images.values()}
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
        x, y, w, h = (number(v, "bbox", where) for v in bbox)
        objects[images[annotation["image_id"]]].append(
            AnnotatedObject(categories[annotation["category_id"]], (x, y, x + w, y + h), where))
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


def _unique_ids(items: list[dict], key: str, path: Path) -> None:
    """Two entries with one id would silently drop one image, or relabel a category's objects."""
    seen: set[int | str] = set()
    for item in items:
        if item["id"] in seen:
            raise DataError(f"{path.name} {key}: id {item['id']!r} is listed twice; ids must be unique")
        seen.add(item["id"])


def _categories(items: list[dict], path: Path) -> dict[int | str, str]:
    _unique_ids(items, "categories", path)
    return {c["id"]: str(c["name"]) for c in items}


def _images(items: list[dict], path: Path) -> dict[int | str, str]:
    """Image id -> file name; each file name a non-empty string, each listed once."""
    _unique_ids(items, "images", path)
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
