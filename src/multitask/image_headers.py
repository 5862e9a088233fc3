"""Image sizes read from encoded bytes with TensorFlow ops, before anything is decoded.

The SavedModel export decodes inside its graph, where Pillow's checks (`multitask.images`) do not
run, and `tf.io.decode_image` allocates whatever size a header declares: a 150 KB PNG can declare
50,000 x 50,000 pixels. `declared_pixels` reads the size from the header of PNG, JPEG, BMP and WebP, so the graph can
refuse the image first, and answers -1 for any other format (TensorFlow would also decode JPEG XL).
GIF is left out: TensorFlow decodes every frame of a GIF, each at the size of the largest frame,
which no header field declares (a GIF declaring 1 x 1 decodes to whatever its frames hold).
"""

from __future__ import annotations

import tensorflow as tf

_PAD = b"\0" * 32  # so that reading a field past the end of a short input reads zeros, not an error
_PNG = b"\x89PNG\r\n\x1a\n"
GRAPH_FORMATS_SHOWN = "PNG, JPEG, BMP or WebP"  # what the SavedModel takes


def _bytes(padded: tf.Tensor, offset: int, length: int) -> tf.Tensor:
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, length), tf.uint8), tf.int64)


def _little(padded: tf.Tensor, offset: int, length: int) -> tf.Tensor:
    """An unsigned little-endian integer of `length` bytes at `offset`."""
    return tf.reduce_sum(_bytes(padded, offset, length) * (256 ** tf.range(length, dtype=tf.int64)))


def _big(padded: tf.Tensor, offset: int, length: int) -> tf.Tensor:
    return tf.reduce_sum(_bytes(padded, offset, length) * (256 ** tf.range(length - 1, -1, -1, dtype=tf.int64)))


def _is(padded: tf.Tensor, offset: int, magic: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(padded, offset, len(magic)), magic)


def _bmp(padded: tf.Tensor) -> tf.Tensor:
    """BITMAPINFOHEADER: signed 32-bit width and height (a negative height: rows top-down)."""
    def signed(offset: int) -> tf.Tensor:
        value = _little(padded, offset, 4)
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    return signed(18) * signed(22)


def _webp(padded: tf.Tensor) -> tf.Tensor:
    """The first chunk says how the size is stored: lossy (VP8), lossless (VP8L), extended (VP8X)."""
    def lossless() -> tf.Tensor:
        bits = _little(padded, 21, 4)
        return (bits % 2 ** 14 + 1) * (bits // 2 ** 14 % 2 ** 14 + 1)

    return tf.case([
        (_is(padded, 12, b"VP8 "), lambda: (_little(padded, 26, 2) % 2 ** 14) * (_little(padded, 28, 2) % 2 ** 14)),
        (_is(padded, 12, b"VP8L"), lossless),
        (_is(padded, 12, b"VP8X"), lambda: (_little(padded, 24, 3) + 1) * (_little(padded, 27, 3) + 1)),
    ], default=lambda: tf.constant(-1, tf.int64))


def declared_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """Width x height as one encoded image's header declares them (int64 scalar), or -1 when the
    bytes are not PNG, JPEG, BMP or WebP (`GRAPH_FORMATS_SHOWN`)."""
    padded = tf.strings.join([encoded, _PAD])

    def jpeg() -> tf.Tensor:
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)  # reads the frame header only
        return shape[0] * shape[1]

    return tf.case([
        (_is(padded, 0, _PNG), lambda: _big(padded, 16, 4) * _big(padded, 20, 4)),
        (_is(padded, 0, b"\xff\xd8\xff"), jpeg),
        (_is(padded, 0, b"BM"), lambda: _bmp(padded)),
        (tf.logical_and(_is(padded, 0, b"RIFF"), _is(padded, 8, b"WEBP")), lambda: _webp(padded)),
    ], default=lambda: tf.constant(-1, tf.int64))
