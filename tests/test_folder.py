"""`folder:PATH` datasets: CSV and COCO, image modes, resize policies, and every bad input."""

import csv
import io
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
from multitask.step_keys import data_fingerprint

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
    before, ref = data_fingerprint(data), catalog.prepare(data)
    Image.new("RGB", (64, 64), (9, 9, 9)).save(folder / "images/000001.png")
    assert data_fingerprint(data) != before
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


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def _truncated_jpeg(folder: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 90, 3), dtype=np.uint8)).save(
        folder / "images/000002.jpg", quality=90)
    data = (folder / "images/000002.jpg").read_bytes()
    (folder / "images/000002.jpg").write_bytes(data[: len(data) * 2 // 3])
    _edit_row(3, filename="images/000002.jpg")(folder)


def _symlink_outside(folder: Path) -> None:
    outside = folder.parent / "elsewhere.png"
    shutil.copy(folder / "images/000001.png", outside)
    (folder / "images/000001.png").unlink()
    (folder / "images/000001.png").symlink_to(outside)


def _named_twice(spelling: str):
    """Row 6 names row 3's image again, spelled another way."""
    def edit(folder: Path) -> None:
        rows = _rows(folder)
        rows[5][0] = spelling.format(rows[2][0])
        _write_rows(folder, rows)
    return edit


def _linked_twice(folder: Path) -> None:
    rows = _rows(folder)
    (folder / "alias.png").symlink_to(folder / rows[2][0])
    rows[5][0] = "alias.png"
    _write_rows(folder, rows)


def _hard_linked_twice(folder: Path) -> None:
    rows = _rows(folder)
    (folder / "alias.png").hardlink_to(folder / rows[2][0])
    rows[5][0] = "alias.png"
    _write_rows(folder, rows)


def _through_a_linked_folder(folder: Path) -> None:
    """`deep/../images/x.png` reads `images/x.png`; resolving `deep` first would reach elsewhere."""
    rows = _rows(folder)
    (folder / "elsewhere" / "inner").mkdir(parents=True)
    (folder / "deep").symlink_to(folder / "elsewhere" / "inner")
    rows[5][0] = f"deep/../{rows[2][0]}"
    _write_rows(folder, rows)


def _coco_text(text: str):
    def apply(folder: Path) -> None:
        _coco(lambda document: None)(folder)
        (folder / "annotations.json").write_text(text)
    return apply


def _image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (126, 111), (90, 30, 60)).save(out, format=fmt)
    return out.getvalue()


BAD_INPUTS = {
    "missing annotations": (lambda f: (f / "annotations.csv").unlink(), "has neither annotations.csv nor"),
    "empty csv": (_replace_file("annotations.csv", b""), "annotations.csv is empty"),
    "header only": (_replace_file("annotations.csv", b"filename,label,xmin,ymin,xmax,ymax\n"), "no rows"),
    "missing columns": (_replace_file("annotations.csv", b"file,label,x,y\na.png,cat,1,2\n"),
                        "missing column.*filename"),
    # rows are numbered as lines of the file (the header is row 1), as a spreadsheet shows them
    "missing image file": (_edit_row(3, filename="images/nope.png"),
                           r"annotations.csv row 4: image file .*nope.png does not exist"),
    "corrupt image": (_corrupt_image, r"000002.png is not a readable image"),
    "not an image": (_replace_file("images/000004.png", b"hello, not a png"), r"000004.png is not a readable image"),
    "box outside image": (_edit_row(5, xmax="500"), r"row 6 \(images/000004.png\): box .* outside the 126x111 image"),
    "xmin >= xmax": (_edit_row(6, xmin="30", xmax="30"), r"row 7 \(images/000005.png\): box needs xmin < xmax"),
    "negative coordinate": (_edit_row(7, ymin="-2"), r"row 8 \(images/000006.png\): negative box coordinate"),
    "non-numeric coordinate": (_edit_row(8, xmax="wide"), r"row 9: xmax must be a number, got 'wide'"),
    "unknown split": (lambda f: _write_rows(f, [r + ["split" if i == 0 else "holdout"]
                                                for i, r in enumerate(_rows(f))]),
                      r"row 2: split must be one of train, validation, test, got 'holdout'"),
    "single class": (_all_one_class, r"only one class \('circle'\)"),
    "class without training example": (_class_only_in_test, r"class\(es\) 'unicorn' have no training example"),
    "coco unknown category": (_coco(_unknown_category), r"annotation 4: unknown category_id 77"),
    "coco several objects": (_coco(_two_objects), r"images/000005.png has 2 objects"),
    # hostile files
    "decompression bomb": (_replace_file("images/000003.png", _png_declaring(200_000, 200_000)),
                           r"row 5: .*000003.png declares more than 178,956,970 pixels, over the limit of 50,000,000"),
    "dot-dot path": (_edit_row(2, filename="../../../../etc/passwd"),
                     r"row 3: file name '../../../../etc/passwd' leads outside the dataset folder"),
    "absolute path": (_edit_row(2, filename="/etc/passwd"), r"row 3: file name '/etc/passwd' is absolute"),
    "symlink out of the folder": (_symlink_outside, r"row 3: file name 'images/000001.png' leads outside"),
    "truncated jpeg": (_truncated_jpeg, r"row 4: cannot decode image .*000002.jpg: image file is truncated"),
    # formats other than PNG, JPEG, BMP, WebP and GIF are never opened (Pillow would read dozens)
    "tiff image": (_replace_file("images/000004.png", _image_bytes("TIFF")),
                   r"000004.png is not a readable image \(PNG, JPEG, BMP, WebP or GIF\)"),
    "eps image": (_replace_file("images/000004.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 126 111\n"),
                  r"000004.png is not a readable image \(PNG, JPEG, BMP, WebP or GIF\)"),
    # one image named two ways would be two examples with their own splits (train/test leakage)
    "same image as ./name": (_named_twice("./{}"), r"annotations.csv row 3 and annotations.csv row 6 name the same "
                             r"image file images/000001.png \(as 'images/000001.png' and './images/000001.png'\)"),
    "same image through ..": (_named_twice("images/../{}"), r"row 3 and .*row 6 name the same image file"),
    "same image through a link": (_linked_twice, r"row 3 and .*row 6 name the same image file images/000001.png"),
    "same image through a hard link": (_hard_linked_twice, r"row 3 and .*row 6 name the same image file"),
    "same image past a linked folder": (_through_a_linked_folder, r"row 3 and .*row 6 name the same image file"),
    "csv field over the size limit": (_edit_row(4, label="x" * 140_000),
                                      r"annotations.csv row 5: not readable as CSV \(field larger than field limit"),
    "coco nested too deeply": (_coco_text("[" * 100_000 + "]" * 100_000), r"nested too deeply"),
    "coco not an object": (_coco_text("[1, 2]"), r"expected a JSON object with images, categories and annotations"),
    "coco annotation not an object": (_coco(lambda d: d["annotations"].insert(3, 7)),
                                      r"annotations.json annotations #3: must be a JSON object, got '7'"),
    "coco file_name not a string": (_coco(lambda d: d["images"][2].update(file_name=12)),
                                    r"image id \d+: file_name must be a non-empty string, got 12"),
    "coco image listed twice": (_coco(lambda d: d["images"][4].update(file_name=d["images"][2]["file_name"])),
                                r"image ids \d+ and \d+ name the same image file"),
    "coco image id twice": (_coco(lambda d: d["images"][4].update(id=d["images"][2]["id"])),
                            r"annotations.json images: id \d+ is listed twice; ids must be unique"),
    "coco category id twice": (_coco(lambda d: d["categories"].append({**d["categories"][0], "name": "other"})),
                               r"annotations.json categories: id \d+ is listed twice"),
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



def test_the_pixel_limit_is_a_setting(workspace, tmp_path, csv_folder):
    folder = _copy(csv_folder, tmp_path)
    (folder / "images/000003.png").write_bytes(_png_declaring(10_000, 10_000))
    with pytest.raises(DataError, match=r"row 5: .*000003.png declares 10000x10000 = 100,000,000 pixels, "
                                        r"over the limit of 50,000,000 \(data.max_pixels\)"):
        _prepare(folder)
    with pytest.raises(DataError, match=r"row 2: .*000000.png declares \d+x\d+ = [\d,]+ pixels, over the limit "
                                        r"of 100 \(data.max_pixels\)"):
        _prepare(_copy(csv_folder, tmp_path / "small"), max_pixels=100)


def test_a_decompression_bomb_ends_data_validate_in_one_line(prefect_server, workspace, tmp_path, csv_folder):
    from typer.testing import CliRunner

    from cli import app

    folder = _copy(csv_folder, tmp_path)
    (folder / "images/000003.png").write_bytes(_png_declaring(200_000, 200_000))
    result = CliRunner().invoke(app, ["data", "validate", f"folder:{folder}"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: annotations.csv row 5: ") and "over the limit" in result.stderr


SMALL_SPLITS = ("train", "train", "validation", "test")


def _small_folder(folder: Path, images: dict[str, Image.Image], box=(10, 20, 30, 60), **save) -> Path:
    """Four images (name -> image), the same pixel box on each: two in train, one per other split."""
    (folder / "images").mkdir(parents=True)
    rows = [HEADER + ["split"]]
    for index, ((name, image), split) in enumerate(zip(images.items(), SMALL_SPLITS, strict=True)):
        image.save(folder / "images" / name, **save)
        rows.append([f"images/{name}", f"class{index % 2}", *box, split])
    _write_rows(folder, rows)
    return folder


def test_cmyk_and_16_bit_images_are_accepted_and_converted(workspace, tmp_path):
    grey16 = Image.fromarray(np.full((80, 40), 40000, dtype=np.uint16))  # mode I;16, about 61% grey
    folder = _small_folder(tmp_path / "modes", {
        "cmyk.jpg": Image.new("CMYK", (40, 80), (0, 255, 255, 0)),  # pure red in CMYK
        "grey16.png": grey16,
        "rgb.png": Image.new("RGB", (40, 80), (0, 0, 255)),
        "grey.png": Image.new("L", (40, 80), 128),
    })
    assert Image.open(folder / "images/grey16.png").mode.startswith("I")
    ref = _prepare(folder)
    images = {e["filename"].decode(): e["image"] for e in catalog.examples(ref, "train", None).as_numpy_iterator()}
    red = images["images/cmyk.jpg"].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    grey = images["images/grey16.png"]
    assert grey.shape == (80, 40, 3) and abs(int(grey[0, 0, 0]) - round(40000 / 257)) <= 1  # scaled, not clipped


def _sideways_photo() -> Image.Image:
    """Stored 80 wide x 40 high with EXIF orientation 6: shown upright as 40 wide x 80 high.

    The red block is stored at the top-left; upright (rotated 90 degrees clockwise) it is at
    the top-right: pixels x 24..40, y 0..16 of the upright image.
    """
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:16, :16] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.info["exif"] = exif.tobytes()
    return image


def test_exif_rotation_is_applied_to_boxes_in_training_and_prediction(workspace, tmp_path):
    from multitask.predict import predict

    upright_box = (24, 0, 40, 16)  # xmin, ymin, xmax, ymax of the red block as an annotation tool shows it
    photos = {f"p{i}.jpg": _sideways_photo() for i in range(4)}
    folder = _small_folder(tmp_path / "phone", photos, box=upright_box, exif=_sideways_photo().info["exif"],
                               quality=95)
    data = DataConfig(dataset=f"folder:{folder}", image_size=32)
    snapshot = build_snapshot(catalog.prepare(data), data, workspace / "snap")
    example = next(tf.data.Dataset.load(f"{snapshot.path}/train").as_numpy_iterator())
    ymin, xmin, ymax, xmax = (int(round(v * 32)) for v in example["box"])
    assert (ymin, xmin, ymax, xmax) == (0, 19, 6, 32)  # 40x80 upright, stretched to 32x32
    inside = example["image"][ymin:ymax, xmin:xmax].reshape(-1, 3).mean(axis=0)
    assert inside[0] > 180 and inside[1] < 80  # the box lies on the red block

    # a model answering the annotated box: prediction maps it to the upright photo's pixels
    import keras

    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    relative = np.array([ymin, xmin, ymax, xmax]) / 32
    box = keras.layers.Dense(4, kernel_initializer="zeros", name="box",
                             bias_initializer=keras.initializers.Constant(relative))(pooled)
    label = keras.layers.Dense(2, activation="softmax", name="label")(pooled)
    [row] = predict(keras.Model(inputs, {"label": label, "box": box}), [folder / "images/p0.jpg"],
                    {"class_names": ["class0", "class1"], "image_size": 32})
    assert row["box"] == pytest.approx({"xmin": 23.75, "ymin": 0.0, "xmax": 40.0, "ymax": 15.0}, abs=0.01)
