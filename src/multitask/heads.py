"""The heads' building blocks: a conv block, the soft-argmax box layer, and the layers that let
the label head look inside the predicted box and where the box head locates the object.

The layers are registered with Keras, so models holding them load in safe mode.
"""

from __future__ import annotations

import keras
from keras import layers, ops

# Keras' default 0.99 let the moving statistics lag far behind the weights on photo data:
# the same model scored 0.16 accuracy in inference mode and 0.36 with batch statistics.
BN_MOMENTUM = 0.9
# An untrained box head answers about [0.12, 0.12, 0.88, 0.88] (see `SoftArgmaxBox`).
BOX_PRIOR = 8.0


def where_share(maps):
    """A five-map box head's fifth map as its softmax over all positions: (batch, height, width),
    float32, summing to 1 per image. Where the head locates the object (see `SoftArgmaxBox`)."""
    logits = ops.cast(maps[..., 4], "float32")
    height, width = logits.shape[1], logits.shape[2]
    share = ops.softmax(ops.reshape(logits, (-1, height * width)), axis=-1)
    return ops.reshape(share, (-1, height, width))


def _profiles(maps):
    """(batch, height, 4) profiles along y and (batch, width, 4) along x. Four maps: each map
    averaged over the other axis. A fifth map: its softmax over the image weights the columns
    (for the y profiles) and the rows (for the x profiles), so the edges are read where the
    object is, not from every texture across the image; a flat fifth map gives the average."""
    if maps.shape[-1] == 4:
        return ops.mean(maps, axis=2), ops.mean(maps, axis=1)
    attention = where_share(maps)
    edges = maps[..., :4]
    rows = ops.einsum("bhwc,bw->bhc", edges, ops.sum(attention, axis=1))
    cols = ops.einsum("bhwc,bh->bwc", edges, ops.sum(attention, axis=2))
    return rows, cols


def edge_logits(maps, prior: float):
    """A box head's score maps (float32) -> for ymin, xmin, ymax, xmax: (batch, n) logits over the
    n positions that edge can take, and those positions (n,) in image fractions. A start edge can
    lie at the top or left side of each pixel row or column, an end edge at the bottom or right
    side. `prior` adds `-prior * position` to the start edges' logits and `+prior * position` to
    the end edges' (see `SoftArgmaxBox`)."""
    height, width = maps.shape[1], maps.shape[2]
    rows, cols = _profiles(maps)
    starts_y = ops.arange(height, dtype="float32") / height
    starts_x = ops.arange(width, dtype="float32") / width
    edges = ((rows[..., 0], starts_y, -1.0), (cols[..., 1], starts_x, -1.0),
             (rows[..., 2], starts_y + 1.0 / height, 1.0), (cols[..., 3], starts_x + 1.0 / width, 1.0))
    return [(profile + sign * prior * positions, positions) for profile, positions, sign in edges]


def conv_bn(x, filters: int, kernel: int = 3, strides: int = 1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU()(x)


@keras.saving.register_keras_serializable(package="multitask")
class SoftArgmaxBox(layers.Layer):
    """Four score maps (ymin, xmin, ymax, xmax) -> a box, each edge as an expected position.

    The y maps are averaged over columns and the x maps over rows (weighted by an optional
    fifth map, see `_profiles`), giving one profile per edge; a softmax over each profile
    weights the pixel-edge positions. Coordinates stay in [0, 1] and keep sub-pixel
    precision, which dense heads on flattened features lose.

    `ordered` returns each pair of edges sorted, so a box can never be inverted; `prior`
    adds `-prior * position` to the start edges' logits and `+prior * position` to the end
    edges', so an untrained head answers a box over most of the image, which overlaps any
    object. Without both, a head could start as a tiny box at the centre and be pushed by
    1 - GIoU into an inverted box, where IoU and GIoU have no gradient: it stayed at mean IoU
    0 on glyphs over photographs.

    `window` (with a fifth map) reads each edge only within +-window (a share of the image's
    side) of the fifth map's peak, so a texture far from the object cannot pull an edge
    towards it (docs/quality.md). All three default to off, the behaviour of models saved before.
    """

    def __init__(self, ordered: bool = False, prior: float = 0.0, window: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.ordered = ordered
        self.prior = prior
        self.window = window

    def call(self, maps):
        maps = ops.cast(maps, "float32")
        peak_y, peak_x = self._peak(maps)

        def expected(logits, positions, peak):
            if peak is not None:
                logits = ops.where(ops.abs(positions[None, :] - peak) > self.window, -1e9, logits)
            return ops.sum(ops.softmax(logits, axis=1) * positions, axis=1)

        peaks = (peak_y, peak_x, peak_y, peak_x)
        ymin, xmin, ymax, xmax = (expected(logits, positions, peak)
                                  for (logits, positions), peak in zip(edge_logits(maps, self.prior), peaks))
        if self.ordered:
            ymin, ymax = ops.minimum(ymin, ymax), ops.maximum(ymin, ymax)
            xmin, xmax = ops.minimum(xmin, xmax), ops.maximum(xmin, xmax)
        return ops.stack([ymin, xmin, ymax, xmax], axis=-1)

    def _peak(self, maps):
        """The fifth map's maximum as (batch, 1) y and x positions in [0, 1), or None, None when
        there is no window. It gets no gradient: the window moves, its edges are not learnt.
        Found by comparing with the maximum, not by `argmax`, whose Keras form TFLite's builtin
        ops cannot run (FlexBitwiseAnd); on a tie, the first position, as argmax."""
        if not self.window or maps.shape[-1] != 5:
            return None, None
        where = maps[..., 4]
        return self._position(ops.max(where, axis=2)), self._position(ops.max(where, axis=1))

    @staticmethod
    def _position(profile):
        """(batch, n) -> (batch, 1): the first of the n positions where the profile peaks, in [0, 1).
        Not the tied positions' mean: between two equal peaks (bfloat16 maps tie) is no object."""
        n = profile.shape[1]
        hit = ops.cast(profile >= ops.max(profile, axis=1, keepdims=True), "float32")
        before_end = ops.max(hit * ops.arange(n, 0, -1, dtype="float32"), axis=1, keepdims=True)  # n - first
        return (n - before_end) / n

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4)

    def get_config(self):
        return {**super().get_config(), "ordered": self.ordered, "prior": self.prior,
                "window": self.window}


@keras.saving.register_keras_serializable(package="multitask")
class BoxAlign(layers.Layer):
    """The feature map inside a box, resampled to a `size` x `size` grid (RoIAlign).

    Inputs `(features, boxes)`: a (batch, H, W, C) map and (batch, 4) [ymin, xmin, ymax, xmax]
    boxes in [0, 1]. Each output cell averages the map around its sample point with a tent
    as wide as the cell (at least one map cell), done as two small interpolation matrices per
    image (rows, columns) and one einsum: no gather, so it exports and runs anywhere. The
    boxes get no gradient from here: the label head reads where the box head points, it does
    not move the box.
    """

    def __init__(self, size: int = 4, margin: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.margin = margin  # widen the box by this share of its size on each side

    def _weights(self, low, high, cells: int):
        """(batch, size, cells): how much each map cell contributes to each sample along one axis."""
        steps = (ops.arange(self.size, dtype="float32") + 0.5) / self.size
        points = (low[:, None] + steps[None, :] * (high - low)[:, None]) * cells
        centres = ops.arange(cells, dtype="float32") + 0.5
        width = ops.maximum((high - low) * cells / self.size, 1.0)[:, None, None]
        tent = ops.maximum(0.0, 1.0 - ops.abs(points[:, :, None] - centres[None, None, :]) / width)
        return tent / (ops.sum(tent, axis=-1, keepdims=True) + 1e-6)

    def call(self, inputs):
        features, boxes = inputs
        boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
        if self.margin:
            extent = ops.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=-1)
            boxes = boxes + self.margin * extent * ops.convert_to_tensor([-1.0, -1.0, 1.0, 1.0])
        rows = ops.cast(self._weights(boxes[:, 0], boxes[:, 2], features.shape[1]), features.dtype)
        cols = ops.cast(self._weights(boxes[:, 1], boxes[:, 3], features.shape[2]), features.dtype)
        return ops.einsum("bih,bhwc,bjw->bijc", rows, features, cols)

    def compute_output_shape(self, input_shape):
        features_shape = input_shape[0]
        return (features_shape[0], self.size, self.size, features_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "margin": self.margin}
