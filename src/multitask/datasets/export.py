"""Write generated shapes as a folder dataset (PNG files + CSV or COCO), in varied sizes and modes.

Used by the tests and to try `folder:PATH` end to end:
`python -m multitask.datasets.export PATH --count 3000 --format csv`.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from multitask.atomic import write_bytes
from multitask.datasets.shapes import CLASS_NAMES, make_example

_MODES = ("RGB", "L", "RGBA", "P")


def _scaled(image: np.ndarray, box: list[float], rng: np.random.Generator) -> tuple[Image.Image, list[float]]:
    """Resize to a random non-square size and mode; return the box in pixels (x0, y0, x1, y1)."""
    width, height = (int(v) for v in rng.integers(48, 129, size=2))
    picture = Image.fromarray(image).resize((width, height), Image.NEAREST)
    picture = picture.convert(_MODES[int(rng.integers(len(_MODES)))])
    ymin, xmin, ymax, xmax = box
    return picture, [xmin * width, ymin * height, xmax * width, ymax * height]


def write_folder(root: Path, count: int, fmt: str = "csv", seed: int = 0) -> Path:
    """`count` images in `root/images/` plus `annotations.csv` (pixels) or COCO `annotations.json`."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, coco_images, coco_annotations = [], [], []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        image, label, box = make_example(rng)
        picture, pixels = _scaled(image, box, rng)
        filename = f"images/{index:06d}.png"
        picture.save(root / filename)
        rows.append([filename, CLASS_NAMES[label], *(round(v, 2) for v in pixels)])
        coco_images.append({"id": index, "file_name": filename, "width": picture.width, "height": picture.height})
        x0, y0, x1, y1 = pixels
        coco_annotations.append({"id": index, "image_id": index, "category_id": label + 1,
                                 "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]})
    if fmt == "coco":
        categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)]
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
    args = parser.parse_args()
    print(write_folder(args.root, args.count, args.format, args.seed))


if __name__ == "__main__":
    main()
