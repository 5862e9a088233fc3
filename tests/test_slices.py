"""Metrics per slice on a tiny set whose answers are known."""

import numpy as np
import pytest

from multitask.slices import box_areas, interval, size_of, slice_metrics, slice_rows

CLASSES = ["circle", "square", "star"]


def test_each_slice_counts_its_images_and_averages_both_heads():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    correct = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=bool)
    iou = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.1, 0.3])
    sizes = np.array(["small", "large", "large", "large", "medium", "small", "small", "large"])
    slices = slice_metrics(correct, iou, labels, CLASSES, sizes)
    circle, star = slices["class"]["circle"], slices["class"]["star"]
    assert (circle["count"], circle["accuracy"], circle["mean_iou"]) == (4, 0.75, pytest.approx(0.75))
    assert (star["count"], star["accuracy"], star["mean_iou"]) == (2, 0.0, pytest.approx(0.2))
    assert slices["class"]["square"]["accuracy_interval"] == [1.0, 1.0]  # every resample is all right
    small, medium, large = (slices["size"][size] for size in ("small", "medium", "large"))
    assert [small["count"], medium["count"], large["count"]] == [3, 1, 4]
    assert small["accuracy"] == pytest.approx(2 / 3) and large["mean_iou"] == pytest.approx(0.6)
    assert [row["slice"] for row in slice_rows(slices)] == [
        "class circle", "class square", "class star", "size small", "size medium", "size large"]


def test_a_slice_without_images_has_no_numbers():
    slices = slice_metrics(np.array([True]), np.array([0.5]), np.array([0]), CLASSES, np.array(["small"]))
    assert slices["class"]["star"] == {"count": 0, "accuracy": None, "accuracy_interval": None, "mean_iou": None,
                                       "mean_iou_interval": None}


def test_intervals_hold_the_mean_and_narrow_with_more_images():
    rng = np.random.default_rng(1)
    widths = []
    for n in (20, 2000):
        values = (rng.random(n) < 0.8).astype(float)
        low, high = interval(values)
        assert low <= values.mean() <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 5  # about 1/sqrt(100) as wide
    assert interval(np.array([0.0, 1.0] * 50)) == interval(np.array([0.0, 1.0] * 50))  # seeded


def test_sizes_follow_the_area_thresholds_of_the_original_image():
    boxes = np.array([[0, 0, 31, 32], [0, 0, 32, 32], [10, 10, 106, 106], [0, 0, 95.9, 96]])
    areas = box_areas(boxes)
    assert areas.tolist() == pytest.approx([992, 1024, 9216, 9206.4])
    assert size_of(areas, 32 ** 2, 96 ** 2).tolist() == ["small", "medium", "large", "medium"]
