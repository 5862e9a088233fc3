"""Box losses: the seed's binary cross-entropy, or a sum of Huber, 1 - IoU, 1 - GIoU, 1 - CIoU.

A box loss is named by its terms joined with "+", e.g. "huber", "giou", "huber+ciou".
"""

from __future__ import annotations

import keras
from keras import ops

from multitask.heads import BOX_PRIOR, edge_logits, where_share
from multitask.metrics import box_iou, intersection_and_union

_EPS = 1e-7
TERMS = ("huber", "iou", "giou", "ciou")


def giou(y_true, y_pred):
    """Generalised IoU: IoU minus the share of the enclosing box not covered by the union.

    Unlike IoU it still has a gradient when the boxes do not overlap.
    """
    inter, union = intersection_and_union(y_true, y_pred)
    enclosing_h = ops.maximum(y_true[..., 2], y_pred[..., 2]) - ops.minimum(y_true[..., 0], y_pred[..., 0])
    enclosing_w = ops.maximum(y_true[..., 3], y_pred[..., 3]) - ops.minimum(y_true[..., 1], y_pred[..., 1])
    enclosing = enclosing_h * enclosing_w
    return inter / (union + _EPS) - (enclosing - union) / (enclosing + _EPS)


def ciou(y_true, y_pred):
    """Complete IoU (IoU minus centre-distance and aspect-ratio penalties), Keras' own."""
    return keras.utils.bounding_boxes.compute_ciou(y_true, y_pred, "yxyx")  # "rel_*" formats are refused


def split_terms(kind: str) -> list[str]:
    terms = kind.split("+")
    unknown = [t for t in terms if t not in TERMS]
    if unknown or len(set(terms)) != len(terms):
        raise ValueError(f"box loss {kind!r}: use 'bce' or distinct terms from {', '.join(TERMS)} joined by '+'")
    return terms


@keras.saving.register_keras_serializable(package="multitask")
class BoxLoss(keras.losses.Loss):
    """A sum of terms on [ymin, xmin, ymax, xmax] boxes: huber, 1 - IoU, 1 - GIoU, 1 - CIoU."""

    def __init__(self, kind: str = "huber", huber_delta: float = 0.02, name: str = "box_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.terms = split_terms(kind)
        self.kind = kind
        self.huber_delta = huber_delta

    def _huber(self, y_true, y_pred):
        error = ops.abs(y_true - y_pred)
        quadratic = ops.minimum(error, self.huber_delta)
        return ops.mean(0.5 * quadratic**2 + self.huber_delta * (error - quadratic), axis=-1)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        term_values = {
            "huber": lambda: self._huber(y_true, y_pred),
            "iou": lambda: 1.0 - box_iou(y_true, y_pred),
            "giou": lambda: 1.0 - giou(y_true, y_pred),
            "ciou": lambda: 1.0 - ciou(y_true, y_pred),
        }
        return sum(term_values[term]() for term in self.terms)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "huber_delta": self.huber_delta}


def box_loss(kind: str, huber_delta: float) -> keras.losses.Loss:
    if kind == "bce":
        return keras.losses.BinaryCrossentropy(name="box_loss")
    return BoxLoss(kind=kind, huber_delta=huber_delta)


def _coverage(low, high, cells: int):
    """(batch, cells): the share of each of `cells` equal cells along one axis inside [low, high]."""
    starts = ops.arange(cells, dtype="float32") / cells
    inside = ops.minimum(high[:, None], starts + 1.0 / cells) - ops.maximum(low[:, None], starts)
    return ops.clip(inside * cells, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="multitask")
class WhereLoss(keras.losses.Loss):
    """-log of the share of a where map's softmax that lies inside the true box.

    `y_pred` is a five-map box head's score maps (see `heads.SoftArgmaxBox`); the fifth says
    where to read the edges. Trained only through the box loss, it spread over the glyph and a
    glyph-like thing beside it on photographs (docs/quality.md); this loss tells it where the
    object is. Cells count by how much of them the box covers, so a box smaller than a cell
    still has a target.
    """

    def __init__(self, name: str = "where_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        boxes = ops.cast(y_true, "float32")
        share = where_share(y_pred)
        rows = _coverage(boxes[:, 0], boxes[:, 2], share.shape[1])
        cols = _coverage(boxes[:, 1], boxes[:, 3], share.shape[2])
        mass = ops.sum(share * rows[:, :, None] * cols[:, None, :], axis=(1, 2))
        return -ops.log(mass + _EPS)


@keras.saving.register_keras_serializable(package="multitask")
class EdgeLoss(keras.losses.Loss):
    """Cross-entropy of each edge's softmax over its positions (a box head's score maps, as
    `heads.SoftArgmaxBox` reads them) against the true edge, shared between the two positions
    either side of it by distance: the distribution focal loss of Li et al. 2020 (GFL; despite
    its name, a plain cross-entropy). The box losses see only each softmax's mean, which can be
    right with the mass split between the object's edge and a glyph-like edge beside it; on
    held-out photographs such a box spreads over both (docs/quality.md). This puts the mass on
    the edge. Read over the whole image, not the layer's window, so no edge is out of reach."""

    def __init__(self, prior: float = BOX_PRIOR, name: str = "edge_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.prior = prior

    def call(self, y_true, y_pred):
        boxes = ops.cast(y_true, "float32")
        per_edge = [self._cross_entropy(logits, positions, boxes[:, i])
                    for i, (logits, positions) in enumerate(edge_logits(ops.cast(y_pred, "float32"), self.prior))]
        return ops.mean(ops.stack(per_edge, axis=-1), axis=-1)

    @staticmethod
    def _cross_entropy(logits, positions, edge):
        n = positions.shape[0]
        index = ops.clip((edge - positions[0]) * n, 0.0, n - 1.0)  # positions are 1/n apart
        below = ops.floor(index)
        above_share = index - below
        below = ops.cast(below, "int32")
        target = ((1.0 - above_share)[:, None] * ops.one_hot(below, n)
                  + above_share[:, None] * ops.one_hot(ops.minimum(below + 1, n - 1), n))
        return -ops.sum(target * ops.log_softmax(logits, axis=1), axis=1)

    def get_config(self):
        return {**super().get_config(), "prior": self.prior}
