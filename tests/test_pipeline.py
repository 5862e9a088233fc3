import numpy as np
import pytest
import tensorflow as tf

from multitask.augment import Augmentation, flip_box
from multitask.config import DataConfig
from multitask.datasets import catalog
from multitask.pipeline import build_snapshot, make_dataset


def test_flip_box_formula():
    box = tf.constant([0.1, 0.2, 0.5, 0.7])
    np.testing.assert_allclose(flip_box(box).numpy(), [0.1, 0.3, 0.5, 0.8], atol=1e-6)
    np.testing.assert_allclose(flip_box(flip_box(box)).numpy(), box.numpy(), atol=1e-6)


def _box_of_bright_pixels(image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    ys, xs = np.nonzero(image[..., 0] > threshold)
    size = image.shape[0]
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / size


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    home = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTITASK_HOME", str(home))
        data = DataConfig(train_size=24, validation_size=6, test_size=6, image_size=32)
        yield build_snapshot(catalog.prepare(data), data, home / "snapshot")


def test_snapshot_holds_resized_uint8(snapshot):
    assert snapshot.splits == {"train": 24, "validation": 6, "test": 6} and snapshot.is_intact()
    example = next(iter(tf.data.Dataset.load(f"{snapshot.path}/train")))
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == tf.uint8
    assert example["label"].dtype == tf.int32 and example["box"].dtype == tf.float32


def test_batches_have_keras_layout_and_ranges(snapshot):
    augmentation = Augmentation(flip=True, scale=0.3, shift=1.0, colour=0.2)
    images, targets = next(iter(make_dataset(snapshot, "train", 8, shuffle_buffer=24, augmentation=augmentation,
                                             seed=1)))
    assert images.shape == (8, 32, 32, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    assert targets["label"].shape == (8,) and targets["box"].shape == (8, 4)
    boxes = targets["box"].numpy()
    assert ((0 <= boxes) & (boxes <= 1)).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_shuffle_and_flips_are_seeded(snapshot):
    def first_epoch(seed):
        batches = make_dataset(snapshot, "train", 24, shuffle_buffer=24,
                               augmentation=Augmentation(flip=True, scale=0.3, shift=1.0), seed=seed)
        images, targets = next(iter(batches))
        return images.numpy(), targets["box"].numpy()

    a, b, c = first_epoch(5), first_epoch(5), first_epoch(6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_each_epoch_is_drawn_from_the_seed_and_its_number_alone(snapshot):
    epoch = tf.Variable(0, dtype=tf.int64)
    batches = make_dataset(snapshot, "train", 8, shuffle_buffer=10, seed=2, epoch=epoch,
                           augmentation=Augmentation(flip=True, scale=0.3, shift=1.0))
    assert int(batches.cardinality()) == 3

    def one_epoch(data):
        images, targets = zip(*[(im.numpy(), t["box"].numpy()) for im, t in data])
        return np.concatenate(images), np.concatenate(targets)

    first = one_epoch(batches)
    epoch.assign(1)
    second = one_epoch(batches)
    resumed = one_epoch(make_dataset(snapshot, "train", 8, shuffle_buffer=10, seed=2,
                                     epoch=tf.Variable(1, dtype=tf.int64),
                                     augmentation=Augmentation(flip=True, scale=0.3, shift=1.0)))
    assert not np.array_equal(first[0], second[0])  # a new order and new augmentations each epoch
    assert np.array_equal(second[0], resumed[0]) and np.array_equal(second[1], resumed[1])


def test_the_shuffle_keeps_every_example_once(snapshot):
    def names(buffer, epoch):
        data = make_dataset(snapshot, "train", 5, shuffle_buffer=buffer, epoch=tf.Variable(epoch, dtype=tf.int64))
        return [float(box) for _, targets in data for box in targets["box"][:, 0].numpy()]

    plain = names(0, 0)
    for buffer, epoch in ((7, 0), (7, 1), (24, 0), (100, 3)):
        order = names(buffer, epoch)
        assert sorted(order) == sorted(plain) and order != plain


def test_a_split_that_fits_the_buffer_is_shuffled_uniformly(snapshot):
    """Over 24 epochs each example lands in the first half about as often as not (no fixed windows)."""
    data = make_dataset(snapshot, "train", 24, shuffle_buffer=24, epoch=(epoch := tf.Variable(0, dtype=tf.int64)))
    plain = next(iter(make_dataset(snapshot, "train", 24)))[1]["box"].numpy().tolist()
    first_halves = []
    for number in range(24):
        epoch.assign(number)
        order = next(iter(data))[1]["box"].numpy().tolist()
        first_halves.append(sum(plain.index(box) < 12 for box in order[:12]))
    # fixed windows would keep 12 of the file's first 12 in the first half; a uniform shuffle keeps about 6
    assert 4.8 < np.mean(first_halves) < 7.2


def test_flipped_image_and_box_agree(tmp_path):
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[2:7, 1:5] = 255  # a bright rectangle, box [2, 1, 7, 5] / 16
    box = np.array([2, 1, 7, 5], dtype=np.float32) / 16
    data = tf.data.Dataset.from_tensors({"image": image, "label": np.int32(0), "box": box, "filename": b""}).repeat(40)
    data.save(str(tmp_path / "train"))
    from multitask.records import SnapshotRef

    ref = SnapshotRef(path=str(tmp_path), class_names=["a"], splits={"train": 40}, image_size=16, fingerprint="-")
    images, targets = next(iter(make_dataset(ref, "train", 40, augmentation=Augmentation(flip=True), seed=0)))
    flipped = 0
    for im, bx in zip(images.numpy(), targets["box"].numpy()):
        np.testing.assert_allclose(_box_of_bright_pixels(im), bx, atol=1e-6)
        flipped += not np.allclose(bx, box)
    assert 0 < flipped < 40  # some flipped, some not


def test_zoom_and_shift_move_the_box_with_the_object_and_keep_it_in_frame(tmp_path):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[4:20, 6:26] = 255  # a large object: zooming in must not push it out of the frame
    box = np.array([4, 6, 20, 26], dtype=np.float32) / 32
    data = tf.data.Dataset.from_tensors({"image": image, "label": np.int32(0), "box": box, "filename": b""}).repeat(64)
    data.save(str(tmp_path / "train"))
    from multitask.records import SnapshotRef

    ref = SnapshotRef(path=str(tmp_path), class_names=["a"], splits={"train": 64}, image_size=32, fingerprint="-")
    augmentation = Augmentation(flip=True, scale=0.5, shift=1.0, colour=0.2)
    images, targets = next(iter(make_dataset(ref, "train", 64, augmentation=augmentation, seed=3)))
    boxes = targets["box"].numpy()
    assert ((boxes >= 0) & (boxes <= 1)).all()  # the whole object stays in the frame
    sizes = (boxes[:, 2] - boxes[:, 0]) * 32
    assert sizes.min() < 12 and sizes.max() > 18 and len(np.unique(boxes[:, 0].round(3))) > 20  # zoomed, moved
    for im, bx in zip(images.numpy(), boxes):
        np.testing.assert_allclose(_box_of_bright_pixels(im, threshold=0.3), bx, atol=1.5 / 32)
