"""The input size follows the objects: large objects stay at 64 px, small glyphs get more pixels."""

import csv

import pytest

from multitask.config import DataConfig
from multitask.config_loader import load_config
from multitask.datasets import catalog
from multitask.datasets.export import write_folder
from multitask.pipeline import build_snapshot
from multitask.sizing import LARGEST_SIDE, SMALLEST_SIDE, TARGET_PIXELS, suggest_image_size


def _quarter_side(folder) -> float:
    """The 25th percentile of the boxes' smaller side, relative to their image, from the CSV."""
    from PIL import Image

    sides = []
    with open(folder / "annotations.csv", newline="") as f:
        for row in list(csv.DictReader(f)):
            width, height = Image.open(folder / row["filename"]).size
            sides.append(min((float(row["xmax"]) - float(row["xmin"])) / width,
                             (float(row["ymax"]) - float(row["ymin"])) / height))
    return sorted(sides)[len(sides) // 4]


@pytest.mark.parametrize(("style", "expected"), [("rescaled", SMALLEST_SIDE), ("photo", LARGEST_SIDE)])
def test_the_side_follows_the_smallest_quarter_of_objects(workspace, tmp_path, style, expected):
    folder = write_folder(tmp_path / style, 80, style=style)
    data = DataConfig(dataset=f"folder:{folder}")
    side = suggest_image_size(catalog.prepare(data), None, "stretch")
    assert side == expected and side % 16 == 0
    assert _quarter_side(folder) * side >= TARGET_PIXELS or side == LARGEST_SIDE


def test_an_unset_size_is_chosen_when_the_snapshot_is_built_and_a_set_one_is_kept(workspace, tmp_path):
    folder = write_folder(tmp_path / "photo", 60, style="photo")
    auto = load_config(sets=[f'data.dataset="folder:{folder}"']).data
    assert auto.image_size is None
    ref = catalog.prepare(auto)
    assert build_snapshot(ref, auto, tmp_path / "auto").image_size == LARGEST_SIDE
    fixed = load_config(sets=[f'data.dataset="folder:{folder}"', "data.image_size=48"]).data
    assert build_snapshot(ref, fixed, tmp_path / "fixed").image_size == 48
