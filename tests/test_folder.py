"""`folder:PATH` datasets: CSV and COCO, image modes, resize policies, and every bad input."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from multitask.config import DataConfig
from multitask.datasets import catalog
from multitask.datasets.export import write_folder
from multitask.errors import DataError
from multitask.pipeline import build_snapshot, resize_example

HEADER = ["filename", "label", "xmin", "ymin", "xmax", "ymax"]


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("csv"), 60, "csv")


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(folder, target)
    return target


def _rows(folder: Path) -> list[list[str]]:
    with open(folder / "annotations.csv", newline="") as f:
        return list(csv.reader(f))


def _write_rows(folder: Path, rows: list[list]) -> None:
    with open(folder / "annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _prepare(folder: Path, **data) -> object:
    return catalog.prepare(DataConfig(dataset=f"folder:{folder}", **data))


def test_csv_folder_builds_with_sorted_classes_and_stable_splits(workspace, csv_folder):
    ref = _prepare(csv_folder)
    assert ref.kind == "folder" and ref.class_names == sorted(ref.class_names)
    assert sum(ref.splits.values()) == 60 and ref.splits["train"] > ref.splits["test"] > 0
    again = _prepare(csv_folder)
    assert again.path == ref.path and again.splits == ref.splits


def test_every_image_mode_becomes_rgb_and_boxes_are_relative(workspace, csv_folder):
    ref = _prepare(csv_folder)
    rows = {r[0]: r for r in _rows(csv_folder)[1:]}
    for example in catalog.examples(ref, "train", None).take(20).as_numpy_iterator():
        assert example["image"].ndim == 3 and example["image"].shape[2] == 3
        filename = example["filename"].decode()
        width, height = Image.open(csv_folder / filename).size
        xmin, ymin, xmax, ymax = (float(v) for v in rows[filename][2:])
        np.testing.assert_allclose(example["bbox"], [ymin / height, xmin / width, ymax / height, xmax / width],
                                   atol=1e-5)
    modes = {Image.open(p).mode for p in (csv_folder / "images").iterdir()}
    assert {"L", "RGBA", "P"} <= modes


def test_coco_folder_matches_the_csv_one(workspace, tmp_path, csv_folder):
    coco = write_folder(tmp_path / "coco", 60, "coco")
    a, b = _prepare(csv_folder), _prepare(coco)
    assert a.class_names == b.class_names and a.splits == b.splits


def test_coco_several_objects_is_an_error_or_keeps_the_largest(workspace, tmp_path):
    coco = write_folder(tmp_path / "coco", 60, "coco")
    document = json.loads((coco / "annotations.json").read_text())
    document["annotations"].append({"id": 999, "image_id": 3, "category_id": 1, "bbox": [1, 1, 60, 40]})
    (coco / "annotations.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"images/000003.png has 2 objects"):
        _prepare(coco)
    ref = _prepare(coco, multi_object="largest")
    boxes = {e["filename"].decode(): e["bbox"] for split in ("train", "validation", "test")
             for e in catalog.examples(ref, split, None).as_numpy_iterator()}
    width, height = Image.open(coco / "images/000003.png").size
    np.testing.assert_allclose(boxes["images/000003.png"], [1 / height, 1 / width, 41 / height, 61 / width], atol=1e-5)


def test_split_column_is_honoured(workspace, tmp_path, csv_folder):
    folder = _copy(csv_folder, tmp_path)
    rows = _rows(folder)
    splits = ["train"] * 40 + ["validation"] * 10 + ["test"] * 10
    _write_rows(folder, [rows[0] + ["split"]] + [r + [s] for r, s in zip(rows[1:], splits)])
    assert _prepare(folder).splits == {"train": 40, "validation": 10, "test": 10}


def test_an_edited_image_changes_the_fingerprint(workspace, tmp_path, csv_folder):
    folder = _copy(csv_folder, tmp_path)
    data = DataConfig(dataset=f"folder:{folder}")
    before, ref = data.fingerprint, catalog.prepare(data)
    Image.new("RGB", (64, 64), (9, 9, 9)).save(folder / "images/000001.png")
    assert data.fingerprint != before
    assert catalog.prepare(data).path != ref.path  # a new TFDS folder, never the stale one


def test_letterbox_keeps_the_box_on_the_object():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[10:30, 20:60] = 255  # box in pixels: y 10-30 of 40, x 20-60 of 80
    box = np.array([10 / 40, 20 / 80, 30 / 40, 60 / 80], dtype=np.float32)
    out = resize_example({"image": image, "label": 0, "bbox": box, "filename": ""}, 32, "letterbox")
    # 80x40 -> 32x16, padded by 8 rows above and below
    np.testing.assert_allclose(out["box"].numpy(), [(8 + 4) / 32, 8 / 32, (8 + 12) / 32, 24 / 32], atol=1e-6)
    bright = np.argwhere(out["image"].numpy()[..., 0] > 127)
    assert tuple(bright.min(axis=0)) == (12, 8) and tuple(bright.max(axis=0) + 1) == (20, 24)


def test_snapshot_of_a_folder_dataset(workspace, csv_folder):
    data = DataConfig(dataset=f"folder:{csv_folder}", image_size=32, resize="letterbox")
    snapshot = build_snapshot(catalog.prepare(data), data, workspace / "snap")
    assert sum(snapshot.splits.values()) == 60 and snapshot.resize == "letterbox"
    example = next(iter(tf.data.Dataset.load(f"{snapshot.path}/train")))
    assert example["image"].shape == (32, 32, 3)


# Bad input: each fails at once, names the file and row or image, and leaves no dataset behind.

def _edit_row(index: int, **changes):
    def edit(folder: Path) -> None:
        rows = _rows(folder)
        for column, value in changes.items():
            rows[index][HEADER.index(column)] = value
        _write_rows(folder, rows)
    return edit


def _replace_file(relative: str, content: bytes):
    return lambda folder: (folder / relative).write_bytes(content)


def _corrupt_image(folder: Path) -> None:
    data = (folder / "images/000002.png").read_bytes()
    (folder / "images/000002.png").write_bytes(data[: len(data) // 2])


def _all_one_class(folder: Path) -> None:
    rows = _rows(folder)
    _write_rows(folder, [rows[0]] + [r[:1] + ["circle"] + r[2:] for r in rows[1:]])


def _class_only_in_test(folder: Path) -> None:
    rows = _rows(folder)
    rows[0].append("split")
    body = [r + ["train"] for r in rows[1:]]
    body[0][1], body[0][-1] = "unicorn", "test"
    _write_rows(folder, [rows[0]] + body)


def _coco(edit):
    def apply(folder: Path) -> None:
        (folder / "annotations.csv").unlink()
        write_folder(folder, 12, "coco")
        document = json.loads((folder / "annotations.json").read_text())
        edit(document)
        (folder / "annotations.json").write_text(json.dumps(document))
    return apply


def _unknown_category(document):
    document["annotations"][4]["category_id"] = 77


def _two_objects(document):
    document["annotations"].append({**document["annotations"][5], "id": 500})


BAD_INPUTS = {
    "missing annotations": (lambda f: (f / "annotations.csv").unlink(), "has neither annotations.csv nor"),
    "empty csv": (_replace_file("annotations.csv", b""), "annotations.csv is empty"),
    "header only": (_replace_file("annotations.csv", b"filename,label,xmin,ymin,xmax,ymax\n"), "no rows"),
    "missing columns": (_replace_file("annotations.csv", b"file,label,x,y\na.png,cat,1,2\n"),
                        "missing column.*filename"),
    # rows are numbered as lines of the file (the header is row 1), as a spreadsheet shows them
    "missing image file": (_edit_row(3, filename="images/nope.png"), r"annotations.csv row 4: image file .*nope.png does not exist"),
    "corrupt image": (_corrupt_image, r"000002.png is not a readable image"),
    "not an image": (_replace_file("images/000004.png", b"hello, not a png"), r"000004.png is not a readable image"),
    "box outside image": (_edit_row(5, xmax="500"), r"row 6 \(images/000004.png\): box .* outside the 126x111 image"),
    "xmin >= xmax": (_edit_row(6, xmin="30", xmax="30"), r"row 7 \(images/000005.png\): box needs xmin < xmax"),
    "negative coordinate": (_edit_row(7, ymin="-2"), r"row 8 \(images/000006.png\): negative box coordinate"),
    "non-numeric coordinate": (_edit_row(8, xmax="wide"), r"row 9: xmax must be a number, got 'wide'"),
    "unknown split": (lambda f: _write_rows(f, [r + ["split" if i == 0 else "holdout"] for i, r in enumerate(_rows(f))]),
                      r"row 2: split must be one of train, validation, test, got 'holdout'"),
    "single class": (_all_one_class, r"only one class \('circle'\)"),
    "class without training example": (_class_only_in_test, r"class\(es\) 'unicorn' have no training example"),
    "coco unknown category": (_coco(_unknown_category), r"annotation 4: unknown category_id 77"),
    "coco several objects": (_coco(_two_objects), r"images/000005.png has 2 objects"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_clear_error_and_nothing_half_written(case, workspace, tmp_path, csv_folder):
    folder = _copy(csv_folder, tmp_path)
    break_it, message = BAD_INPUTS[case]
    break_it(folder)
    with pytest.raises(DataError, match=message):
        _prepare(folder)
    built = list((workspace / "tfds").rglob("dataset_info.json")) if (workspace / "tfds").exists() else []
    assert built == [] and not list((workspace / "tfds").rglob("incomplete*"))


@pytest.mark.parametrize("path", ["/nonexistent/dataset", "/etc/hostname"])
def test_unreadable_path_is_a_clear_error(workspace, path):
    with pytest.raises(DataError, match=f"dataset folder {path} does not exist or is not a folder"):
        _prepare(Path(path))


def test_cluttered_style_draws_tight_boxes_at_varied_scales(tmp_path):
    folder = write_folder(tmp_path / "clutter", 24, "csv", style="cluttered")
    rows = _rows(folder)[1:]
    relative_sizes = []
    for filename, _, *box in rows:
        image = Image.open(folder / filename)
        assert image.width == image.height and 64 <= image.width <= 128
        xmin, ymin, xmax, ymax = map(float, box)
        assert 0 <= xmin < xmax <= image.width and 0 <= ymin < ymax <= image.height
        relative_sizes.append(max(xmax - xmin, ymax - ymin) / image.width)
    assert min(relative_sizes) < 0.45 and max(relative_sizes) > 0.55  # small and large objects
