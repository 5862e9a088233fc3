"""The losses on a five-map box head's score maps: the where loss moves its where map into the
true box, the edge loss puts each edge's softmax on the true edge; the model that is saved and
served keeps only the label and box outputs."""

import keras
import numpy as np
import pytest

from multitask.compiling import compile_model, for_inference, where_map
from multitask.config import ModelConfig, TrainConfig
from multitask.heads import SoftArgmaxBox
from multitask.losses import BoxLoss, EdgeLoss, WhereLoss
from multitask.model import build_model, load
from multitask.weighting import WHERE, WeightedMultiTask

BOX = [0.25, 0.5, 0.5, 0.875]  # rows 2-3 and columns 4-6 of an 8 x 8 map


def _maps(peak_rows: slice, peak_cols: slice) -> np.ndarray:
    maps = np.zeros((1, 8, 8, 5), "float32")
    maps[0, peak_rows, peak_cols, 4] = 12.0
    return maps


def test_the_loss_is_near_zero_for_a_map_inside_the_box_and_large_outside():
    loss = WhereLoss()
    inside = float(loss(np.array([BOX]), _maps(slice(2, 4), slice(4, 7))))
    outside = float(loss(np.array([BOX]), _maps(slice(5, 8), slice(0, 3))))
    flat = float(loss(np.array([BOX]), np.zeros((1, 8, 8, 5), "float32")))
    assert flat == pytest.approx(-np.log(6 / 64), rel=1e-5)  # a flat map: the box's share of the cells
    assert inside < 1e-3 < flat < outside


def test_a_box_smaller_than_a_cell_has_a_target_in_the_cells_it_covers():
    tiny = np.array([[0.30, 0.55, 0.32, 0.57]])  # inside cell (2, 4), a fifth of it each way
    on_cell = float(WhereLoss()(tiny, _maps(slice(2, 3), slice(4, 5))))
    elsewhere = float(WhereLoss()(tiny, _maps(slice(6, 7), slice(1, 2))))
    assert np.isfinite(on_cell) and on_cell < elsewhere


def _edge_maps(ymin_rows: dict[int, float]) -> np.ndarray:
    """Score maps whose edges sit on `BOX` but for ymin, whose logit is `ymin_rows`' per row."""
    maps = np.zeros((1, 8, 8, 5), "float32")
    for row, logit in ymin_rows.items():
        maps[0, row, :, 0] = logit
    maps[0, 3, :, 2], maps[0, :, 4, 1], maps[0, :, 6, 3] = 30.0, 30.0, 30.0
    return maps


def test_the_edge_loss_tells_mass_on_the_edge_from_mass_split_around_it_that_the_box_loss_cannot():
    sharp, split = _edge_maps({2: 30.0}), _edge_maps({1: 30.0, 3: 30.0})  # ymin 0.25 = row 2
    head, box_loss, edge_loss = SoftArgmaxBox(ordered=True), BoxLoss("huber+giou"), EdgeLoss(prior=0.0)
    np.testing.assert_allclose(head(sharp), [BOX], atol=1e-4)
    np.testing.assert_allclose(head(split), [BOX], atol=1e-4)  # the same expected edge
    assert float(box_loss(np.array([BOX]), head(split))) < 1e-4
    assert float(edge_loss(np.array([BOX]), sharp)) < 1e-4
    assert float(edge_loss(np.array([BOX]), split)) > 1.0


def test_an_edge_between_two_positions_is_shared_between_them_by_distance():
    box = np.array([[0.3, 0.5, 0.5, 0.875]])  # ymin 0.3: 0.4 of the way from row 2 to row 3
    matching = _edge_maps({2: float(np.log(0.6)) + 30.0, 3: float(np.log(0.4)) + 30.0})
    losses = [float(EdgeLoss(prior=0.0)(box, maps)) for maps in (matching, _edge_maps({2: 30.0}),
                                                                   _edge_maps({3: 30.0}))]
    entropy = -(0.6 * np.log(0.6) + 0.4 * np.log(0.4)) / 4  # the mean over four edges
    assert losses[0] == pytest.approx(entropy, abs=1e-4) and losses[0] < min(losses[1:])


def _data(n=32, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 3), dtype=np.float32)
    x[:, 8:16, 16:28] += 2.0  # a bright object where the box is
    y = {"label": rng.integers(0, 10, n), "box": np.tile([BOX], (n, 1)).astype("float32")}
    return x, y


def _mass_inside(model: keras.Model, x: np.ndarray) -> float:
    """The where map's mean softmax mass inside `BOX`, for a model holding a five-map box head."""
    maps = keras.Model(model.inputs, where_map(model)).predict(x, verbose=0)
    return float(np.exp(-WhereLoss()(np.tile([BOX], (len(x), 1)), maps)))


@pytest.mark.slow
@pytest.mark.parametrize(("weighting", "edge_loss_weight"), [("fixed", 0.0), ("dwa", 1.0)])
def test_training_moves_the_map_into_the_box_and_the_served_model_answers_label_and_box(
        weighting, edge_loss_weight, tmp_path):
    model = build_model(ModelConfig(), 10, 32)
    x, y = _data()
    before = _mass_inside(model, x)
    cfg = TrainConfig(weighting=weighting, where_loss_weight=1.0, edge_loss_weight=edge_loss_weight,
                      steps_per_execution=1)
    trainer = compile_model(model, cfg, steps_per_epoch=4)
    assert isinstance(trainer, WeightedMultiTask) and set(trainer.output_names) == {"label", "box", WHERE}
    history = trainer.fit(x, y, epochs=3, batch_size=8, verbose=0).history
    assert history["where_loss"][-1] < history["where_loss"][0]
    assert _mass_inside(trainer, x) > before + 0.1
    assert ("edge_loss" in history) == bool(edge_loss_weight)
    if edge_loss_weight:
        assert history["edge_loss"][-1] < history["edge_loss"][0] / 2

    if weighting == "dwa":
        trainer.dwa_history.assign([[1.0, 2.0], [3.0, 4.0]])  # as if two epochs had been seen
    trainer.save(tmp_path / "best.keras")
    served = for_inference(load(tmp_path / "best.keras"), cfg)
    assert set(served.output_names) == {"label", "box"}
    assert isinstance(served, WeightedMultiTask) == (weighting == "dwa")
    if weighting == "dwa":
        np.testing.assert_array_equal(served.dwa_history.numpy(), [[1.0, 2.0], [3.0, 4.0]])
    answers, trained = served.predict(x, verbose=0), trainer.predict(x, verbose=0)
    for head in ("label", "box"):
        np.testing.assert_allclose(answers[head], trained[head], atol=1e-6)
    logs = served.evaluate(x, y, verbose=0, return_dict=True)
    assert not {"where_loss", "edge_loss"} & set(logs) and logs["box_mean_iou"] > 0


def test_only_a_head_with_a_where_map_gets_the_output():
    cfg = TrainConfig(weighting="fixed", where_loss_weight=1.0)
    assert where_map(build_model(ModelConfig(preset="seed"), 10, 32)) is None
    seed = compile_model(build_model(ModelConfig(preset="seed"), 10, 32), cfg, steps_per_epoch=1)
    assert not isinstance(seed, WeightedMultiTask) and WHERE not in seed.output_names
    off = TrainConfig(weighting="fixed", where_loss_weight=0.0, edge_loss_weight=0.0)
    assert WHERE not in compile_model(build_model(ModelConfig(), 10, 32), off, steps_per_epoch=1).output_names
    edges_only = TrainConfig(weighting="fixed", where_loss_weight=0.0, edge_loss_weight=1.0)
    assert WHERE in compile_model(build_model(ModelConfig(), 10, 32), edges_only, steps_per_epoch=1).output_names
