"""Glyphs on crops of real photographs: a benchmark that looks more like users' data than `shapes`.

Each image is a random crop of one of scikit-image's bundled photographs (astronaut, coffee,
rocket, ...; shipped in its wheel, nothing is downloaded), on a canvas of 72-160 px per side
with its own aspect ratio, with one glyph (a letter or digit of Pillow's bundled font) at
about 20-45% of the shorter side (a font size of 28-65%), rotated up to 15 degrees, in a colour that stands out from the
crop under it, saved as JPEG. The box is the tight box of the glyph's pixels.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CLASS_NAMES = ("2", "3", "5", "7", "A", "E", "F", "H", "K", "R")
# Photographs bundled in scikit-image's wheel (its `data` folder), read as plain files.
PHOTOS = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
          "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "retina.jpg",
          "rocket.jpg")
MIN_SIDE, MAX_SIDE = 72, 160
MAX_ROTATION_DEGREES = 15


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:  # an optional dependency: only this benchmark needs it
        raise RuntimeError("the `photo` style needs scikit-image's photographs: pip install scikit-image")
    folder = Path(spec.origin).parent / "data"
    return tuple(np.asarray(Image.open(folder / name).convert("RGB")) for name in PHOTOS)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A crop of a random photo, scaled so the crop covers 30-100% of the photo's shorter side."""
    photo = _photos()[int(rng.integers(len(PHOTOS)))]
    rows, cols = photo.shape[:2]
    scale = rng.uniform(0.3, 1.0) * min(rows / height, cols / width)
    crop_h, crop_w = int(height * scale), int(width * scale)
    top, left = int(rng.integers(0, rows - crop_h + 1)), int(rng.integers(0, cols - crop_w + 1))
    crop = Image.fromarray(np.ascontiguousarray(photo[top:top + crop_h, left:left + crop_w]))
    return crop.resize((width, height), Image.Resampling.BILINEAR)


def _glyph_mask(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    """The glyph alone, white on black, rotated, cropped to its pixels."""
    font = ImageFont.load_default(size=size)
    canvas = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(canvas).text((size // 2, size // 4), CLASS_NAMES[label], fill=255, font=font)
    angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    rotated = canvas.rotate(angle, resample=Image.Resampling.BILINEAR)
    return rotated.crop(rotated.getbbox())


def _standout_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least 100 (of 441) away from the mean colour under the glyph."""
    mean = under.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - mean) >= 100:
            break
    red, green, blue = (int(v) for v in colour)
    return red, green, blue


def make_example(rng: np.random.Generator) -> tuple[Image.Image, int, list[float]]:
    """(JPEG-ready RGB image, label, pixel box [xmin, ymin, xmax, ymax])."""
    width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    canvas = _background(rng, width, height)
    label = int(rng.integers(len(CLASS_NAMES)))
    mask = _glyph_mask(rng, label, int(rng.uniform(0.28, 0.65) * min(width, height)))
    mask = mask.resize((min(mask.width, width), min(mask.height, height)))
    left = int(rng.integers(0, width - mask.width + 1))
    top = int(rng.integers(0, height - mask.height + 1))
    under = np.asarray(canvas)[top:top + mask.height, left:left + mask.width]
    colour = Image.new("RGB", mask.size, _standout_colour(rng, under))
    canvas.paste(colour, (left, top), mask)
    ys, xs = np.nonzero(np.asarray(mask) > 127)
    return canvas, label, [float(left + xs.min()), float(top + ys.min()),
                           float(left + xs.max() + 1), float(top + ys.max() + 1)]
