"""Write generated images as a folder dataset (PNG or JPEG files + CSV or COCO).

Three styles:
- `rescaled` (the default): `shapes` images resized to random non-square sizes and PIL modes,
  for testing the folder reader (`python -m multitask.datasets.export PATH --count 3000`);
- `cluttered`: a harder benchmark, each shape drawn natively on a square canvas of 64-128 px
  with a radius of 12.5% to 38% of the side, over a gradient background with 10-25 distractor
  strokes and blobs, and 0-2 thin strokes across the object itself
  (`python -m multitask.datasets.export PATH --count 3000 --style cluttered`);
- `photo`: glyphs (letters and digits) on crops of real photographs, 72-160 px per side with
  varied aspect ratios, as JPEG (`multitask.datasets.glyphs`; needs scikit-image).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from multitask.atomic import write_bytes
from multitask.datasets import glyphs
from multitask.datasets.shapes import CLASS_NAMES, MAX_ROTATION, contrasting_colour, draw_shape, make_example

_MODES = ("RGB", "L", "RGBA", "P")


def _scaled(image: np.ndarray, box: list[float], rng: np.random.Generator) -> tuple[Image.Image, list[float]]:
    """Resize to a random non-square size and mode; return the box in pixels (x0, y0, x1, y1)."""
    width, height = (int(v) for v in rng.integers(48, 129, size=2))
    picture = Image.fromarray(image).resize((width, height), Image.Resampling.NEAREST)
    picture = picture.convert(_MODES[int(rng.integers(len(_MODES)))])
    ymin, xmin, ymax, xmax = box
    return picture, [xmin * width, ymin * height, xmax * width, ymax * height]


def _rescaled(rng: np.random.Generator) -> tuple[Image.Image, int, list[float]]:
    image, label, box = make_example(rng)
    picture, pixels = _scaled(image, box, rng)
    return picture, label, pixels


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(0, 256, 3))
    return red, green, blue


def _clutter(pen: ImageDraw.ImageDraw, size: int, rng: np.random.Generator, count: int, max_width: int) -> None:
    """Random strokes and small blobs (ellipses, rectangles) in random colours."""
    for _ in range(count):
        x, y = rng.uniform(0, size, 2)
        kind = rng.integers(3)
        if kind == 0:
            dx, dy = rng.uniform(-0.3, 0.3, 2) * size
            pen.line([x, y, x + dx, y + dy], fill=_random_colour(rng), width=int(rng.integers(1, max_width + 1)))
        else:
            rx, ry = rng.uniform(0.01, 0.05, 2) * size
            shape = pen.ellipse if kind == 1 else pen.rectangle
            shape([x - rx, y - ry, x + rx, y + ry], fill=_random_colour(rng))


def _cluttered(rng: np.random.Generator) -> tuple[Image.Image, int, list[float]]:
    """A shape at a varied scale on a cluttered gradient; the box is the shape's tight pixel box."""
    size = int(rng.integers(64, 129))
    top, bottom = rng.integers(0, 256, size=(2, 3))
    ramp = np.linspace(0, 1, size)[:, None, None]
    background = top + (bottom - top) * ramp + rng.normal(0, 12, size=(size, size, 3))
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    _clutter(pen, size, rng, int(rng.integers(10, 26)), max_width=3)

    label = int(rng.integers(len(CLASS_NAMES)))
    radius = rng.uniform(0.125, 0.38) * size  # objects 16-48 px across at 64 px
    cx, cy = rng.uniform(radius, size - radius, 2)
    mask = Image.new("L", (size, size), 0)
    draw_shape(ImageDraw.Draw(mask), label, cx, cy, radius, rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    colour = contrasting_colour(rng, (top + bottom) / 2)
    canvas.paste(Image.new("RGB", (size, size), tuple(int(v) for v in colour)), (0, 0), mask)
    ys, xs = np.nonzero(np.asarray(mask) > 127)
    _clutter(pen, size, rng, int(rng.integers(0, 3)), max_width=1)  # thin strokes across the object
    return canvas, label, [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@dataclass(frozen=True)
class Style:
    make: Callable[[np.random.Generator], tuple[Image.Image, int, list[float]]]
    class_names: tuple[str, ...]
    suffix: str  # the image format, by file name


STYLES = {
    "rescaled": Style(_rescaled, CLASS_NAMES, ".png"),
    "cluttered": Style(_cluttered, CLASS_NAMES, ".png"),
    "photo": Style(glyphs.make_example, glyphs.CLASS_NAMES, ".jpg"),
}


def write_folder(root: Path, count: int, fmt: str = "csv", seed: int = 0, style: str = "rescaled") -> Path:
    """`count` images in `root/images/` plus `annotations.csv` (pixels) or COCO `annotations.json`."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    chosen = STYLES[style]
    rows, coco_images, coco_annotations = [], [], []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        picture, label, pixels = chosen.make(rng)
        filename = f"images/{index:06d}{chosen.suffix}"
        if chosen.suffix == ".jpg":
            picture.save(root / filename, quality=int(rng.integers(70, 96)))
        else:
            picture.save(root / filename)
        rows.append([filename, chosen.class_names[label], *(round(v, 2) for v in pixels)])
        coco_images.append({"id": index, "file_name": filename, "width": picture.width, "height": picture.height})
        x0, y0, x1, y1 = pixels
        coco_annotations.append({"id": index, "image_id": index, "category_id": label + 1,
                                 "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]})
    if fmt == "coco":
        categories = [{"id": i + 1, "name": name} for i, name in enumerate(chosen.class_names)]
        document = {"images": coco_images, "annotations": coco_annotations, "categories": categories}
        write_bytes(root / "annotations.json", json.dumps(document).encode())
    else:
        with open(root / "annotations.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label", "xmin", "ymin", "xmax", "ymax"])
            writer.writerows(rows)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--format", choices=("csv", "coco"), default="csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", choices=tuple(STYLES), default="rescaled")
    args = parser.parse_args()
    print(write_folder(args.root, args.count, args.format, args.seed, args.style))


if __name__ == "__main__":
    main()
