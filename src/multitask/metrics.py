"""Box metrics on `[ymin, xmin, ymax, xmax]` boxes in [0, 1]: IoU, mean IoU, share of IoU >= t."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_EPS = 1e-7


def _area(box):
    return ops.maximum(box[..., 2] - box[..., 0], 0.0) * ops.maximum(box[..., 3] - box[..., 1], 0.0)


def intersection_and_union(a, b):
    """Elementwise intersection and union areas of two box tensors of the same shape."""
    top = ops.maximum(a[..., 0], b[..., 0])
    left = ops.maximum(a[..., 1], b[..., 1])
    bottom = ops.minimum(a[..., 2], b[..., 2])
    right = ops.minimum(a[..., 3], b[..., 3])
    inter = ops.maximum(bottom - top, 0.0) * ops.maximum(right - left, 0.0)
    return inter, _area(a) + _area(b) - inter


def box_iou(a, b):
    inter, union = intersection_and_union(a, b)
    return inter / (union + _EPS)


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(box_iou(ops.convert_to_tensor(a, "float32"),
                                                   ops.convert_to_tensor(b, "float32"))))


@keras.saving.register_keras_serializable(package="multitask")
class MeanBoxIoU(keras.metrics.Mean):
    """Mean IoU between true and predicted boxes (one box per image)."""

    def __init__(self, name: str = "mean_iou", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(box_iou(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")),
                                    sample_weight)


@keras.saving.register_keras_serializable(package="multitask")
class BoxIoUAbove(keras.metrics.Mean):
    """Share of images whose predicted box has IoU >= threshold with the true box."""

    def __init__(self, threshold: float = 0.5, name: str = "iou50", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        iou = box_iou(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))
        return super().update_state(ops.cast(iou >= self.threshold, "float32"), sample_weight)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
