"""How long training runs: a box head that always starts, a plateau, a time budget."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from multitask import callbacks
from multitask import train as train_module
from multitask.config import ModelConfig
from multitask.config_loader import load_config
from multitask.datasets.export import write_folder
from multitask.heads import SoftArgmaxBox
from multitask.model import build_model
from multitask.train import read_history

from helpers import DEFAULT_MODEL, tiny_config, training_inputs


def test_an_untrained_box_head_starts_wide():
    """The old head started as a 3%-wide box at the centre. Reading every edge, it covers the
    image; reading them near the where map's peak (`box_window`), still over a quarter of each side."""
    images = np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32)
    boxes = build_model(ModelConfig(box_window=0.0), 10, 64)(images)["box"].numpy()
    assert (boxes[:, :2] < 0.15).all() and (boxes[:, 2:] > 0.85).all()
    boxes = build_model(ModelConfig(box_window=0.5), 10, 64)(images)["box"].numpy()
    assert (boxes[:, 2:] - boxes[:, :2] > 0.25).all()


def test_the_box_score_maps_see_well_beyond_a_small_glyph():
    """Each score-map pixel must see more than 36 px either way at 128 px (glyphs there are up to
    58 px across): the head that saw 19 px either way spread its boxes over glyph and texture."""
    model = build_model(ModelConfig(), 10, 128)
    box_layer = next(layer for layer in model.layers if isinstance(layer, SoftArgmaxBox))
    maps = keras.Model(model.inputs, box_layer.input)
    image = tf.Variable(np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32))
    with tf.GradientTape() as tape:
        centre = tf.reduce_sum(maps(image, training=False)[0, 32, 32])  # the map pixel over (64, 64)
    seen = np.flatnonzero(tf.reduce_sum(tf.abs(tape.gradient(centre, image)[0]), axis=(1, 2)).numpy())
    assert 64 - seen.min() > 36 and seen.max() - 64 > 36


def test_a_fifth_map_reads_the_edges_where_the_object_is():
    """Two columns whose ymin maps disagree: the averaged profile answers between them, the
    fifth map's choice of column answers that column's edge; a flat fifth map is the average."""
    maps = np.zeros((1, 8, 8, 5), dtype=np.float32)
    maps[0, 5, 2, 0] = maps[0, 1, 6, 0] = 40.0  # ymin at row 5 in column 2, at row 1 in column 6
    averaged = SoftArgmaxBox()(maps[..., :4]).numpy()[0, 0]
    maps[0, 4, 2, 4] = 40.0  # the object is in column 2
    attended = SoftArgmaxBox()(maps).numpy()[0, 0]
    assert 1 / 8 < averaged < 5 / 8 and attended == pytest.approx(5 / 8, abs=0.01)
    maps[..., 4] = 3.0
    assert SoftArgmaxBox()(maps).numpy()[0, 0] == pytest.approx(averaged, abs=1e-6)


def test_a_window_reads_the_edges_near_the_where_maps_peak():
    """A strong ymin far from the object (row 1) and a weaker one near it (row 5), the where
    map's peak at row 6: read everywhere the far one wins, within +-0.5 of the side the near one."""
    maps = np.zeros((1, 8, 8, 5), dtype=np.float32)
    maps[0, 1, :, 0], maps[0, 5, :, 0] = 40.0, 20.0
    maps[0, 6, 3, 4] = 40.0
    assert SoftArgmaxBox()(maps).numpy()[0, 0] == pytest.approx(1 / 8, abs=0.01)
    assert SoftArgmaxBox(window=0.5)(maps).numpy()[0, 0] == pytest.approx(5 / 8, abs=0.01)
    assert SoftArgmaxBox(window=0.5)(maps[..., :4]).numpy()[0, 0] == pytest.approx(1 / 8, abs=0.01)
    assert SoftArgmaxBox.from_config(SoftArgmaxBox(window=0.5).get_config()).window == 0.5



def test_a_tie_in_the_where_map_centres_the_window_on_the_first_peak():
    """As argmax did: between two equal peaks (rows 0 and 7; bfloat16 maps tie) is no object, so a
    window there (rows 2-5) would read the strong ymin at row 4 instead of the weak one at row 1."""
    maps = np.zeros((1, 8, 8, 5), dtype=np.float32)
    maps[0, 1, :, 0], maps[0, 4, :, 0] = 20.0, 40.0
    maps[0, 0, 3, 4] = maps[0, 7, 5, 4] = 40.0
    assert SoftArgmaxBox(window=0.25)(maps).numpy()[0, 0] == pytest.approx(1 / 8, abs=0.01)


def test_a_box_is_never_inverted_whatever_the_score_maps():
    maps = keras.random.normal((16, 8, 8, 4), stddev=20.0, seed=1)  # edges scattered anywhere
    boxes = SoftArgmaxBox(ordered=True, prior=8.0)(maps).numpy()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    loose = SoftArgmaxBox()(maps).numpy()  # as saved models before the fix: unchanged behaviour
    assert ((loose[:, 2] < loose[:, 0]) | (loose[:, 3] < loose[:, 1])).any()


@pytest.mark.slow
@pytest.mark.graph  # 3 epochs of 120 images: faster compiled than eager
def test_the_box_head_starts_on_glyphs_over_photographs(tmp_path, monkeypatch):
    """On this data the old head was pushed into inverted boxes and stayed at mean IoU 0."""
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "ws"))
    folder = write_folder(tmp_path / "photo", 120, style="photo")
    cfg = tiny_config(DEFAULT_MODEL, f'data.dataset="folder:{folder}"', "train.epochs=3", "train.batch_size=8")
    ref, snapshot = training_inputs(cfg, tmp_path)
    trained = train_module.train(ref, snapshot, cfg.train, tmp_path / "run")
    ious = [row["box_mean_iou"] for row in read_history(trained.history_path)]
    assert min(ious) > 0.05 and ious[-1] > ious[0]


def test_a_plateau_stops_training_and_keeps_the_best_epoch(seed_inputs, tmp_path, monkeypatch):
    model_ref, snapshot, cfg = seed_inputs

    def worse_every_epoch(self, epoch, logs=None):  # a validation score that only falls
        logs[callbacks.SCORE] = -float(epoch)

    monkeypatch.setattr(callbacks.ValidationScore, "on_epoch_end", worse_every_epoch)
    patient = cfg.train.model_copy(update={"epochs": 10, "early_stopping_patience": 2})
    trained = train_module.train(model_ref, snapshot, patient, tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert (trained.epochs, trained.best_epoch, trained.stop_reason) == (3, 1, "plateau")
    assert (history["epochs_run"], history["best_epoch"], history["stop_reason"]) == (3, 1, "plateau")
    assert history["train_images"] == snapshot.splits["train"]  # per epoch: what P9 turns minutes into epochs with
    assert [row["epoch"] for row in history["epochs"]] == [1, 2, 3]


@pytest.mark.parametrize("iou75, patience, images, stopped", [
    (lambda epoch: 0.9, 3, 300, (4, "plateau")),  # the same images right: a plateau after `patience` epochs
    (lambda epoch: 0.9 + epoch / 100, 3, 300, (10, "max_epochs")),  # boxes still coming right at IoU 0.75
    (lambda epoch: 1.0 if epoch >= 3 else 0.9, 8, 300, (4, "plateau")),  # every image right
    (lambda epoch: 299 / 300 if epoch >= 3 else 0.9, 8, 300, (4, "plateau")),  # 1 in 300 wrong: solved
    (lambda epoch: 298 / 300 if epoch >= 3 else 0.9, 8, 300, (10, "max_epochs")),  # 2 in 300: not yet
    (lambda epoch: 99 / 100 if epoch >= 3 else 0.9, 8, 100, (10, "max_epochs")),  # 1 in 100: not yet
])
def test_training_stops_when_no_more_validation_images_come_right(tmp_path, iou75, patience, images, stopped):
    """A score that creeps up while the same images stay right, as on `shapes` (box mean IoU
    +0.011 in 40 epochs with every image right) stops before the score does."""
    log = callbacks.EpochLog(tmp_path / "epochs.json")
    budget = callbacks.Stopping.for_training(log, patience=patience, max_minutes=None, validation_images=images)
    budget.set_model(keras.Sequential())
    for epoch in range(10):
        logs = {"val_label_accuracy": 1.0, "val_box_iou50": 1.0, "val_box_iou75": iou75(epoch),
                callbacks.SCORE: 1.9 + epoch / 1000}
        log.on_epoch_begin(epoch)
        log.on_epoch_end(epoch, logs)
        budget.on_epoch_end(epoch, logs)
        if budget.model.stop_training:
            break
    assert (epoch + 1, budget.reason) == stopped and log.best_epoch() == epoch + 1


def test_the_time_budget_stops_before_another_epoch(seed_inputs, tmp_path):
    model_ref, snapshot, cfg = seed_inputs
    budget = cfg.train.model_copy(update={"epochs": 10, "max_minutes": 0.001})
    trained = train_module.train(model_ref, snapshot, budget, tmp_path)
    assert (trained.epochs, trained.stop_reason) == (1, "time_budget")


def test_the_seed_preset_stays_the_starting_point():
    seed = load_config("seed").train
    assert (seed.epochs, seed.early_stopping_patience, seed.max_minutes, seed.lr_schedule) == (10, None, None,
                                                                                               "constant")
    assert not (seed.augment_flip or seed.augment_scale or seed.augment_shift or seed.augment_colour)
    assert load_config("seed").model.preset == "seed"


@pytest.mark.parametrize("preset", ["mobilenet_v3_small", "efficientnet_v2_b0"])
def test_pretrained_presets_see_224_pixels_unless_told(preset):
    assert load_config(sets=[f'model.preset="{preset}"']).data.image_size == 224
    assert load_config(sets=[f'model.preset="{preset}"', "data.image_size=96"]).data.image_size == 96
    assert load_config().data.image_size is None  # the default preset: from the objects (multitask.sizing)
    assert load_config("seed").data.image_size == 64
