import numpy as np
import pytest
import tensorflow_datasets as tfds

from multitask.config import DataConfig
from multitask.datasets import catalog
from multitask.datasets.shapes import CLASS_NAMES, make_example
from multitask.errors import DataError

SMALL = {"train_size": 12, "validation_size": 4, "test_size": 4}


def _examples(path: str, split: str = "train") -> list[dict]:
    return list(tfds.builder_from_directory(path).as_dataset(split=split, shuffle_files=False).as_numpy_iterator())


def test_build_is_deterministic_per_seed(tmp_path, monkeypatch):
    refs = []
    for name in ("a", "b"):
        monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / name))
        refs.append(catalog.prepare(DataConfig(**SMALL, seed=7)))
    first, second = (_examples(ref.path) for ref in refs)
    assert len(first) == 12
    for x, y in zip(first, second):
        assert np.array_equal(x["image"], y["image"]) and x["label"] == y["label"]
        assert np.array_equal(x["bbox"], y["bbox"])
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "c"))
    other = _examples(catalog.prepare(DataConfig(**SMALL, seed=8)).path)
    assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(first, other))


def test_sizes_splits_and_classes(workspace):
    ref = catalog.prepare(DataConfig(**SMALL))
    assert ref.splits == {"train": 12, "validation": 4, "test": 4}
    assert ref.class_names == list(CLASS_NAMES) and ref.num_classes == 10
    assert ref.is_intact()


def test_box_is_the_tight_box_of_the_shape():
    for seed in range(30):
        image, label, box = make_example(np.random.default_rng(seed))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert 0 <= label < 10
        ymin, xmin, ymax, xmax = box
        assert 0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1
        # objects are 16-44 px across, never a speck and never the whole frame
        assert 12 / 64 <= max(ymax - ymin, xmax - xmin) <= 46 / 64


def test_unknown_or_unsupported_spec_is_a_data_error(workspace):
    with pytest.raises(DataError, match="unknown dataset spec 'nope'"):
        catalog.prepare(DataConfig(dataset="nope"))
    with pytest.raises(DataError, match="not in the catalog"):
        catalog.prepare(DataConfig(dataset="tfds:mnist"))
