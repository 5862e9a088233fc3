"""The `tfds:` catalog, offline: `tfds.testing.mock_data` with examples whose boxes are valid.

The default mock draws invalid boxes (min > max); ours yields valid ones, and on purpose a
few images with two objects and (for oxford_iiit_pet's test split) all-zero head boxes.
"""

import socket
import threading

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from multitask.config import DataConfig
from multitask.datasets import catalog
from multitask.datasets.spec import TFDS_NAMES
from multitask.errors import DataError
from multitask.pipeline import build_snapshot

PER_SPLIT = 10
CLASSES = {"caltech_birds2011": 200, "stanford_dogs": 120, "cars196": 196, "oxford_iiit_pet": 37, "voc/2007": 20}


def _fake(feature, rng, objects: int, zero_box: bool):
    if isinstance(feature, tfds.features.FeaturesDict):
        return {key: _fake(value, rng, objects, zero_box) for key, value in feature.items()}
    if isinstance(feature, tfds.features.Sequence):
        items = [_fake(feature.feature, rng, objects, zero_box) for _ in range(objects)]
        if isinstance(items[0], dict):
            return {k: np.stack([item[k] for item in items]) for k in items[0]}
        return np.stack(items)
    if isinstance(feature, tfds.features.Image):
        return rng.integers(0, 256, size=(40, 56, feature.shape[-1]), dtype=np.uint8)
    if isinstance(feature, tfds.features.ClassLabel):
        return np.int64(rng.integers(feature.num_classes))
    if isinstance(feature, tfds.features.BBoxFeature):
        if zero_box:
            return np.zeros(4, np.float32)
        low = rng.uniform(0, 0.5, 2)
        return np.concatenate([low, low + rng.uniform(0.1, 0.5, 2)]).astype(np.float32)
    if isinstance(feature, tfds.features.Text):
        return "x"
    return np.zeros(feature.shape, feature.np_dtype)


def _as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    """Every 5th image has two objects; pets' test split has zero head boxes on every 3rd."""
    features = self.info.features
    is_test = str(split).startswith("test")

    def generate():
        rng = np.random.default_rng(0)
        for i in range(PER_SPLIT):
            zero_box = is_test and self.name == "oxford_iiit_pet" and i % 3 == 0
            yield _fake(features, rng, objects=2 if i % 5 == 4 else 1, zero_box=zero_box)

    return tf.data.Dataset.from_generator(generate, output_signature=features.get_tensor_spec())


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test here reaches the network: a dataset's hosts are taken as answering (the one test
    of the offline check puts the real check back)."""
    monkeypatch.setattr(catalog, "unreachable_hosts", lambda urls: [])


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_catalog_dataset_builds_a_snapshot_offline(name, workspace):
    data = DataConfig(dataset=f"tfds:{name}", image_size=32)
    with tfds.testing.mock_data(num_examples=PER_SPLIT, as_dataset_fn=_as_dataset):
        ref = catalog.prepare(data)
        snapshot = build_snapshot(ref, data, workspace / "snap")
    assert ref.kind == "tfds" and len(ref.class_names) == CLASSES[name]
    for split in ("train", "validation", "test"):
        kept, dropped = snapshot.splits[split], snapshot.dropped[split]
        assert kept > 0 and kept + dropped == PER_SPLIT
    multi_object = name in ("stanford_dogs", "voc/2007")
    assert snapshot.dropped["train"] == (2 if multi_object else 0)  # two-object images skipped
    if name == "oxford_iiit_pet":
        assert snapshot.dropped["test"] == 4  # the all-zero head boxes
    for example in tf.data.Dataset.load(f"{snapshot.path}/train").as_numpy_iterator():
        ymin, xmin, ymax, xmax = example["box"]
        assert 0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1
        assert 0 <= example["label"] < CLASSES[name] and example["image"].shape == (32, 32, 3)


def test_largest_object_can_be_kept_instead(workspace):
    data = DataConfig(dataset="tfds:voc/2007", image_size=32, multi_object="largest")
    with tfds.testing.mock_data(num_examples=PER_SPLIT, as_dataset_fn=_as_dataset):
        snapshot = build_snapshot(catalog.prepare(data), data, workspace / "snap")
    assert snapshot.dropped["train"] == 0 and snapshot.splits["train"] == PER_SPLIT


def test_unprepared_dataset_without_network_says_how_to_prepare(workspace, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(DataError, match=r"not prepared in .* `multitask data build tfds:cars196`"):
        catalog.prepare(DataConfig(dataset="tfds:cars196"))


def test_offline_an_unprepared_dataset_fails_before_any_download_try(workspace, tmp_path, monkeypatch):
    """TFDS would try each URL six times, each try waiting for the name lookup to fail: minutes.
    The hosts of the first download are tried once, together, for at most `TIMEOUT_S`."""
    from multitask.datasets import reachable, spec, tfds_catalog

    with socket.socket() as closed:  # a port nothing listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(TinyBoxes, "SOURCE", f"http://127.0.0.1:{port}/tiny_boxes.npz")
    monkeypatch.setattr(spec, "TFDS_NAMES", (*spec.TFDS_NAMES, "tiny_boxes"))
    monkeypatch.setitem(tfds_catalog.CATALOG, "tiny_boxes", tfds_catalog.CATALOG["cars196"])
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda *a, **k: pytest.fail("tried"))
    monkeypatch.setattr(catalog, "unreachable_hosts", reachable.unreachable_hosts)  # the real check
    assert reachable.first_urls(catalog._tfds_builder(spec.parse("tfds:tiny_boxes"))) == [TinyBoxes.SOURCE]
    with pytest.raises(DataError, match=r"tiny_boxes is not prepared .* its download cannot be reached from here "
                                        r"\(127.0.0.1: no answer within 10 s\)\. On a machine with network run"):
        catalog.prepare(DataConfig(dataset="tfds:tiny_boxes"))


def test_the_offline_check_steps_aside_where_it_would_prove_nothing(monkeypatch):
    """Behind a proxy a direct connection says nothing; a URL whose port does not parse is TFDS's to
    report; http and https of one host are two targets, each judged on its own."""
    from multitask.datasets import reachable

    tried: list[tuple[str, int]] = []
    monkeypatch.setattr(reachable, "_connects", lambda target, answers: tried.append(target) or answers.update(
        {target: target[1] == 443}))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert reachable.unreachable_hosts(["https://far.example/a.tar"]) == [] and tried == []
    monkeypatch.delenv("HTTPS_PROXY")
    for name in ("HTTP_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert reachable.unreachable_hosts(["https://far.example:99999/a.tar"]) == [] and tried == []
    assert reachable.unreachable_hosts(["https://far.example/a", "http://far.example/b"]) == ["far.example"]
    assert sorted(tried) == [("far.example", 80), ("far.example", 443)]


def test_a_host_that_never_answers_is_given_up_on_after_the_timeout(monkeypatch):
    from multitask.datasets import reachable

    released = threading.Event()

    def hangs(address, timeout):
        released.wait()  # a name lookup that does not return while the test runs, then fails
        raise OSError("name lookup gave up")

    answering = socket.create_server(("127.0.0.1", 0))
    try:
        port = answering.getsockname()[1]
        real = socket.create_connection
        monkeypatch.setattr(reachable.socket, "create_connection",
                            lambda address, timeout: hangs(address, timeout) if address[0] == "slow.example"
                            else real(address, timeout))
        monkeypatch.setattr(reachable, "TIMEOUT_S", 0.5)
        assert reachable.unreachable_hosts(["https://slow.example/a.tar", f"http://127.0.0.1:{port}/b.tar",
                                            "file:///local/c.npz"]) == ["slow.example"]
    finally:
        released.set()
        answering.close()


# The real `tfds:` path, offline: a tiny registered builder whose source is a local file goes
# through the same `download_and_prepare` call as caltech_birds2011 or cars196 (TFDS copies a
# non-http URL with gfile instead of fetching it), then is snapshotted and trained on.

class TinyBoxes(tfds.core.GeneratorBasedBuilder):
    """8 train + 4 test images of a bright square on black; label 1 when it is in the right half."""

    VERSION = tfds.core.Version("1.0.0")
    SOURCE = ""  # set by the test: a local .npz file standing in for the dataset's download URL

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=["left", "right"]),
            "bbox": tfds.features.BBoxFeature(),
        }))

    def _split_generators(self, dl_manager):
        archive = dl_manager.download(self.SOURCE)
        return {"train": self._generate_examples(archive, "train"), "test": self._generate_examples(archive, "test")}

    def _generate_examples(self, archive, split):
        with np.load(archive) as data:
            for i, (image, box) in enumerate(zip(data[f"{split}_images"], data[f"{split}_boxes"])):
                yield i, {"image": image, "label": int(box[1] >= 0.5), "bbox": tfds.features.BBox(*box)}


def _tiny_source(path) -> str:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 8), ("test", 4)):
        images, boxes = np.zeros((count, 24, 24, 3), np.uint8), []
        for i in range(count):
            y, x = rng.integers(0, 16, 2)
            images[i, y:y + 8, x:x + 8] = 255
            boxes.append([y / 24, x / 24, (y + 8) / 24, (x + 8) / 24])
        arrays[f"{split}_images"], arrays[f"{split}_boxes"] = images, np.array(boxes, np.float32)
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.slow
def test_a_tfds_dataset_is_downloaded_prepared_and_trained_on(workspace, tmp_path, monkeypatch):
    from multitask.datasets import spec, tfds_catalog
    from multitask.model import save_initial
    from multitask.train import train

    from helpers import tiny_config

    monkeypatch.setattr(TinyBoxes, "SOURCE", _tiny_source(tmp_path / "tiny_boxes.npz"))
    monkeypatch.setattr(spec, "TFDS_NAMES", (*spec.TFDS_NAMES, "tiny_boxes"))
    monkeypatch.setitem(tfds_catalog.CATALOG, "tiny_boxes", tfds_catalog.CATALOG["cars196"])  # label + bbox
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    config = tiny_config('data.dataset="tfds:tiny_boxes"', "data.image_size=24", "train.batch_size=4")
    ref = catalog.prepare(config.data)
    assert (tmp_path / "tfds" / "downloads").is_dir()  # fetched through TFDS' download manager
    assert ref.class_names == ["left", "right"] and ref.path.startswith(str(tmp_path / "tfds" / "tiny_boxes"))
    snapshot = build_snapshot(ref, config.data, workspace / "snap")
    assert snapshot.splits == {"train": 7, "validation": 1, "test": 4}  # validation: the last 10% of train
    model_ref = save_initial(config.model, ref.num_classes, 24, workspace / "initial.keras")
    trained = train(model_ref, snapshot, config.train, workspace / "run")
    assert trained.epochs == 1 and (workspace / "run" / "model.keras").is_file()
    assert catalog.prepare(config.data).fingerprint == ref.fingerprint  # prepared once, then reused
