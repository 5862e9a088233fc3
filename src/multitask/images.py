"""Open users' image files safely: the allowed formats, a pixel limit, EXIF orientation, any
mode to RGB uint8.

Training, evaluation, prediction and the scoring server all read user images through this
module, so a phone photo stored sideways with an EXIF rotation is seen upright everywhere, as
annotation tools show it (and as its boxes were drawn), and only `FORMATS` are ever decoded:
Pillow would otherwise also open EPS (through Ghostscript), TIFF, PSD and dozens more.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from multitask.config import DEFAULT_MAX_PIXELS, PILLOW_MAX_PIXELS
from multitask.errors import DataError

# The only formats read, in Pillow's names (a GIF gives its first frame), and their file suffixes.
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
FORMATS_SHOWN = "PNG, JPEG, BMP, WebP or GIF"
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def _where(path: Path | BinaryIO) -> str:
    return str(path) if isinstance(path, Path) else getattr(path, "name", "image bytes")


def _open(path: Path | BinaryIO, max_pixels: int) -> Image.Image:
    """Open (headers only) and refuse an image of another format than `FORMATS`, or whose
    declared size is over `max_pixels`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
        try:
            image = Image.open(path, formats=FORMATS)
        except Image.DecompressionBombError as exc:  # over Pillow's hard limit, above ours
            raise DataError(f"{_where(path)} declares more than {PILLOW_MAX_PIXELS:,} pixels, over the limit "
                            f"of {max_pixels:,} (data.max_pixels)") from exc
        except UnidentifiedImageError as exc:
            raise DataError(f"{_where(path)} is not a readable image ({FORMATS_SHOWN})") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise DataError(f"{_where(path)} declares {width}x{height} = {width * height:,} pixels, over the limit "
                        f"of {max_pixels:,} (data.max_pixels)")
    return image


def declared_size(path: Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as the header declares them, read without decoding; the format and the
    pixel limit are checked as `load_rgb` checks them."""
    try:
        with _open(path, max_pixels) as image:
            return image.size
    except DataError:
        raise
    except _DECODE_ERRORS as exc:
        raise DataError(f"{_where(path)} is not a readable image ({exc})") from exc


def upright_size(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as displayed, after the EXIF rotation; checks structure without decoding."""
    try:
        with _open(path, max_pixels) as image:
            width, height = image.size
            image.verify()  # structure and checksums, without decoding the pixels
        with _open(path, max_pixels) as image:  # verify() leaves the file unusable: open again
            orientation = image.getexif().get(_EXIF_ORIENTATION)
    except DataError:
        raise
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path} is not a readable image ({exc})") from exc
    return (height, width) if orientation in _ROTATED else (width, height)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 RGB. 16- and 32-bit grey is scaled down, not clipped."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(image, dtype=np.float64)
        peak = grey.max(initial=0.0)
        if image.mode == "F" and peak <= 1.0:
            grey = grey * 255.0
        elif peak > 255:
            grey = grey / (257.0 if peak <= 65535 else 16843009.0)
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow asks for this step before RGB
    return np.asarray(image.convert("RGB"))


def load_rgb(path: Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image (a file, or bytes in a file object whose `name` says where they came from)
    upright (EXIF applied) as uint8 RGB; one clear `DataError` if it cannot be."""
    try:
        with _open(path, max_pixels) as image:
            image.load()  # a truncated file fails here, not later inside TensorFlow
            return _to_rgb(ImageOps.exif_transpose(image))
    except DataError:
        raise
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot decode image {_where(path)}: {exc}") from exc
