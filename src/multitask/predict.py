"""predict(): label name, score and pixel box for each image, with a registered model.

Images go through the same resize as training (its policy and size come from the model's
registry metadata), and boxes are mapped back to each original image's pixels.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import keras
import numpy as np

from multitask.errors import DataError
from multitask.images import SUFFIXES, load_rgb
from multitask.pipeline import box_to_pixels, normalise, resize_image


def predict(model: keras.Model, paths: list[Path], metadata: dict[str, Any], batch_size: int = 64) -> list[dict]:
    """One dict per image: `image`, `label`, `score`, `box` {xmin, ymin, xmax, ymax} in pixels."""
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        for path in chunk:
            if not Path(path).is_file():
                raise DataError(f"image {path} does not exist")
        rows = predict_images(model, [load_rgb(Path(path)) for path in chunk], metadata, batch_size)
        results += [{"image": str(path), **row} for path, row in zip(chunk, rows)]
    return results


def predict_images(model: keras.Model, images: list[np.ndarray], metadata: dict[str, Any],
                   batch_size: int = 64) -> list[dict]:
    """`predict` for decoded RGB images: `label`, `score`, `box` per image (the served model's path too)."""
    names, size, policy = metadata["class_names"], int(metadata["image_size"]), metadata.get("resize", "stretch")
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = np.stack([resize_image(image, size, policy).numpy() for image in chunk])
        outputs = model.predict_on_batch(normalise(batch))  # predict() costs ~0.1 s per call in set-up
        for image, probs, box in zip(chunk, outputs["label"], outputs["box"]):
            label = int(np.argmax(probs))
            xmin, ymin, xmax, ymax = box_to_pixels(box, image.shape[0], image.shape[1], size, policy)
            results.append({"label": names[label], "score": round(float(probs[label]), 4),
                            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}})
    return results


def images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise DataError(f"no images ({', '.join(SUFFIXES)}) under {folder}")
    return paths


# A cell starting with one of these is a formula to a spreadsheet (`=cmd|' /C calc'!A0`).
# What a spreadsheet may read as the start of a formula, also in full width and after blanks.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading quote before a formula's first character."""
    return f"'{text}" if text.lstrip(" ").startswith(FORMULA_STARTS) else text


def predictions_csv(rows: list[dict]) -> bytes:
    """`predict`'s rows as CSV; file names and labels (the user's text) cannot become formulas."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["image", "label", "score", "xmin", "ymin", "xmax", "ymax"])
    for row in rows:
        box = row["box"]
        writer.writerow([spreadsheet_safe(row["image"]), spreadsheet_safe(row["label"]), row["score"],
                         box["xmin"], box["ymin"], box["xmax"], box["ymax"]])
    return out.getvalue().encode()
