"""Box losses (`multitask.losses`)."""

import numpy as np
import pytest
import tensorflow as tf

from multitask.losses import BoxLoss

BOX = np.array([[0.2, 0.2, 0.6, 0.6]], dtype=np.float32)


@pytest.mark.parametrize("kind", ["huber", "iou", "giou", "ciou", "huber+giou", "huber+ciou"])
def test_box_loss_is_zero_on_identical_boxes_and_grows_apart(kind):
    loss = BoxLoss(kind=kind)
    values = [float(loss(BOX, BOX + shift)) for shift in (0.0, 0.05, 0.2, 0.4)]
    assert values[0] == pytest.approx(0.0, abs=1e-5)  # Keras CIoU keeps an epsilon of ~2e-6
    assert values == sorted(values) and values[1] > 0


@pytest.mark.parametrize(("kind", "has_gradient"), [("giou", True), ("ciou", True), ("iou", False)])
def test_giou_and_ciou_have_a_gradient_for_disjoint_boxes(kind, has_gradient):
    far = tf.Variable([[0.7, 0.7, 0.9, 0.9]])
    with tf.GradientTape() as tape:
        value = BoxLoss(kind=kind)(tf.constant(BOX), far)
    gradient = tape.gradient(value, far)
    assert (gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0) == has_gradient


@pytest.mark.parametrize("kind", ["l2", "huber+huber", "bce+huber"])
def test_unknown_box_losses_are_refused(kind):
    with pytest.raises(ValueError, match="box loss"):
        BoxLoss(kind=kind)
