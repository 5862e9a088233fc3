"""`shapes`: an offline, deterministic TFDS dataset of one coloured shape per 64x64 image.

Each image has a noisy background, a few small distractors, and one shape out of ten
classes at a random size, position, rotation and colour. The box is the tight box of the
shape's pixels, in TFDS's `[ymin, xmin, ymax, xmax]` format in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from multitask.datasets.local_builder import LocalBuilder

IMAGE_SIZE = 64
CLASS_NAMES = (
    "circle", "square", "triangle", "diamond", "pentagon",
    "hexagon", "star", "cross", "ring", "half_disc",
)
_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
_MIN_RADIUS, _MAX_RADIUS = 8, 22
MAX_ROTATION = math.radians(15)  # keeps square and diamond apart


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    train_size: int = 3000
    validation_size: int = 300
    test_size: int = 500
    seed: int = 0

    @classmethod
    def sized(cls, train_size: int, validation_size: int, test_size: int, seed: int) -> ShapesConfig:
        """One config per size and seed, so each lands in its own TFDS folder."""
        name = f"n{train_size}-{validation_size}-{test_size}-s{seed}"
        return cls(name=name, train_size=train_size, validation_size=validation_size,
                   test_size=test_size, seed=seed)


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / sides),
         cy + radius * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _star(cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        a = angle - math.pi / 2 + math.pi * k / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _cross(cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    t = radius * 0.35
    outline = [(-t, -radius), (t, -radius), (t, -t), (radius, -t), (radius, t), (t, t),
               (t, radius), (-t, radius), (-t, t), (-radius, t), (-radius, -t), (-t, -t)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in outline]


def draw_shape(mask: ImageDraw.ImageDraw, label: int, cx: float, cy: float, radius: float, angle: float) -> None:
    """Draw shape `label` in white on a mask."""
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    name = CLASS_NAMES[label]
    if name == "circle":
        mask.ellipse(box, fill=255)
    elif name == "ring":
        mask.ellipse(box, fill=255)
        inner = radius * 0.55
        mask.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif name == "half_disc":
        mask.pieslice(box, start=180 + math.degrees(angle), end=360 + math.degrees(angle), fill=255)
    elif name == "star":
        mask.polygon(_star(cx, cy, radius, angle), fill=255)
    elif name == "cross":
        mask.polygon(_cross(cx, cy, radius, angle), fill=255)
    else:
        sides, base = {"square": (4, math.pi / 4), "triangle": (3, -math.pi / 2), "diamond": (4, 0.0),
                       "pentagon": (5, -math.pi / 2), "hexagon": (6, 0.0)}[name]
        mask.polygon(_polygon(cx, cy, radius, sides, base + angle), fill=255)


def contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).sum() > 200:
            return colour


def make_example(rng: np.random.Generator) -> tuple[np.ndarray, int, list[float]]:
    """One image (uint8 HxWx3), its label and its tight box [ymin, xmin, ymax, xmax] in [0, 1]."""
    size = IMAGE_SIZE
    background = rng.integers(0, 256, size=3)
    image = background + rng.normal(0, 18, size=(size, size, 3))
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 6)):  # distractors: small dots and short strokes
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(1, 2.5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            pen.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            dx, dy = rng.uniform(-5, 5, 2)
            pen.line([x, y, x + dx, y + dy], fill=colour, width=1)

    label = int(rng.integers(0, len(CLASS_NAMES)))
    radius = rng.uniform(_MIN_RADIUS, _MAX_RADIUS)
    cx, cy = rng.uniform(radius, size - radius, 2)
    mask_image = Image.new("L", (size, size), 0)
    draw_shape(ImageDraw.Draw(mask_image), label, cx, cy, radius, rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    red, green, blue = (int(v) for v in contrasting_colour(rng, background))
    canvas.paste(Image.new("RGB", (size, size), (red, green, blue)), (0, 0), mask_image)

    mask = np.asarray(mask_image) > 127
    ys, xs = np.nonzero(mask)
    box = [ys.min() / size, xs.min() / size, (ys.max() + 1) / size, (xs.max() + 1) / size]
    return np.asarray(canvas), label, [float(v) for v in box]


class Shapes(LocalBuilder, tfds.core.GeneratorBasedBuilder):
    """Coloured shapes with one box each; generated, never downloaded."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [ShapesConfig.sized(3000, 300, 500, 0)]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "bbox": tfds.features.BBoxFeature(),
            }),
            supervised_keys=("image", "label"),
        )

    def source(self) -> str:
        cfg = self.builder_config
        return f"the generator (train {cfg.train_size}, validation {cfg.validation_size}, test {cfg.test_size}, " \
               f"seed {cfg.seed})"

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        sizes = {"train": cfg.train_size, "validation": cfg.validation_size, "test": cfg.test_size}
        return {split: self._generate_examples(split, n) for split, n in sizes.items()}

    def _generate_examples(self, split: str, count: int):
        for index in range(count):
            rng = np.random.default_rng([self.builder_config.seed, _SPLIT_IDS[split], index])
            image, label, box = make_example(rng)
            yield index, {"image": image, "label": label, "bbox": tfds.features.BBox(*box)}


def builder(train_size: int, validation_size: int, test_size: int, seed: int, data_dir: str) -> Shapes:
    config = ShapesConfig.sized(train_size, validation_size, test_size, seed)
    # TFDS refuses a custom config that shares a name with a listed one: pass the name then.
    listed = any(c.name == config.name for c in Shapes.BUILDER_CONFIGS)
    return Shapes(config=config.name if listed else config, data_dir=data_dir)
