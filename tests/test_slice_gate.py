"""The gate sees slices: a challenger trained with one class starved wins on average and is kept out."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from flows.retrain import retrain_flow
from flows.train import train_flow
from multitask import registry
from multitask.config import GateConfig
from multitask.gate import decide

from helpers import tiny_config

COLOURS = {"red": (220, 40, 40), "orange": (235, 130, 40), "yellow": (230, 220, 40), "green": (40, 210, 40)}
RARE = "orange"  # a tenth of the test split, and the class the challenger is starved of
TEST = {"red": 30, "orange": 12, "yellow": 30, "green": 30}
JITTER = 30  # each image's colour is its class's, moved by up to this per channel
NAME = 'registry.model_name="sliced"'
NO_FLOORS = ("gate.min_accuracy=0", "gate.min_mean_iou=0")


def _folder(root: Path, rare: int, common: int) -> str:
    """Filled rectangles whose colour is the class, on black, with `rare` training images of `RARE`
    and `common` of each other class. The validation and test splits are the same whatever those are."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for name, colour in COLOURS.items():
        counts = {"train": rare if name == RARE else common, "validation": 6, "test": TEST[name]}
        for split, count in counts.items():
            for index in range(count):
                w, h = rng.integers(10, 40, 2)
                x, y = rng.integers(0, 48 - w), rng.integers(0, 48 - h)
                pixels = np.zeros((48, 48, 3), np.uint8)
                pixels[y:y + h, x:x + w] = np.clip(np.array(colour) + rng.integers(-JITTER, JITTER + 1, 3), 0, 255)
                filename = f"images/{name}-{split}-{index}.png"
                Image.fromarray(pixels).save(root / filename)
                rows.append([filename, name, x, y, x + w, y + h, split])
    with open(root / "annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "label", "xmin", "ymin", "xmax", "ymax", "split"], *rows])
    return f'data.dataset="folder:{root}"'


def test_a_challenger_that_wins_on_average_by_starving_a_class_is_kept_out(prefect_server, workspace, tmp_path):
    """The champion saw the rare class often and the others rarely; the challenger the reverse: one
    training image of the rare class. Far better on average, it fails the rare class's slice."""
    four_epochs = (*NO_FLOORS, NAME, "train.epochs=4")
    first = train_flow(config=tiny_config(*four_epochs, _folder(tmp_path / "champion", rare=60, common=4)))
    assert first["aliases"] == ["challenger", "champion"]
    starved = _folder(tmp_path / "challenger", rare=1, common=60)
    result = retrain_flow(config=tiny_config(*four_epochs, starved, "gate.slice_tolerance=0.05",
                                             "gate.min_slice_count=10"))
    challenger, champion = result["metrics"]["challenger"], result["metrics"]["champion"]
    assert decide(challenger, champion, GateConfig(min_accuracy=0, min_mean_iou=0)).promote, (challenger, champion)
    assert result["decision"] == "kept" and result["reason"].startswith(f"slice {RARE}: accuracy "), result["reason"]
    assert registry.champion("sliced").version == first["version"]
    assert registry.show(f"sliced/{result['challenger']}")["tags"]["gate.reason"] == result["reason"]
