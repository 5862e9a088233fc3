"""A snapshot's data profile on a folder whose images and boxes are known."""

import csv

import numpy as np
import pytest

from multitask.data_profile import FEATURES, read_profile
from multitask.datasets import catalog
from multitask.pipeline import build_snapshot

from helpers import tiny_config, write_rectangles

COUNTS = {"train": {"red": 6, "green": 3}, "validation": {"red": 2, "green": 2}, "test": {"red": 1, "green": 4}}


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_the_profile_counts_every_split_and_measures_images_and_boxes_in_original_pixels(workspace, tmp_path, resize):
    spec = write_rectangles(tmp_path / "rectangles", COUNTS, jitter=0, size=(40, 20))
    cfg = tiny_config(spec, f'data.resize="{resize}"')
    snapshot = build_snapshot(catalog.prepare(cfg.data), cfg.data, tmp_path / "snapshot")
    profile = read_profile(snapshot.profile_path)
    assert {split: block["class_counts"] for split, block in profile["splits"].items()} == {
        split: {"green": per_class["green"], "red": per_class["red"]} for split, per_class in COUNTS.items()}
    train = profile["train"]
    assert set(train) == {*FEATURES, "label"} and len(train["label"]) == 9
    assert set(train["width"]) == {40} and set(train["height"]) == {20} and set(train["aspect"]) == {2}
    with open(tmp_path / "rectangles" / "annotations.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["split"] == "train"]
    by_area = sorted((float(r["xmax"]) - float(r["xmin"])) * (float(r["ymax"]) - float(r["ymin"])) for r in rows)
    assert sorted(train["box_area"]) == pytest.approx(by_area, rel=1e-3)  # the original pixels, either policy
    centres = sorted((float(r["xmin"]) + float(r["xmax"])) / 80 for r in rows)
    assert sorted(train["box_centre_x"]) == pytest.approx(centres, abs=1e-3)
    # black images with one rectangle: brightness is the rectangle's share of the image times its luma
    red = [b for b, label in zip(train["brightness"], train["label"]) if profile["class_names"][label] == "red"]
    assert 0 < min(red) and max(red) < 0.299 * 220 / 255 + 0.587 * 40 / 255 + 0.114 * 40 / 255
    assert profile["splits"]["test"]["quantiles"]["width"] == [40.0] * 5
    assert np.isclose(profile["splits"]["train"]["quantiles"]["aspect"][2], 2.0)
