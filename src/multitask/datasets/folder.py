"""`folder:PATH`: a TFDS builder over the user's own images and annotations.

Images of any size and mode become RGB at their original size; resizing to the model's
input happens in the snapshot, with the configured policy.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import tensorflow_datasets as tfds

from multitask.datasets.annotations import Example
from multitask.datasets.local_builder import LocalBuilder
from multitask.errors import DataError
from multitask.images import load_rgb
from multitask.records import SPLITS


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    root: str = ""
    # kept out of repr: TFDS logs the config, and thousands of examples would flood the log
    class_names: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    examples: tuple[Example, ...] = dataclasses.field(default=(), repr=False)
    max_pixels: int = 0


class Folder(LocalBuilder, tfds.core.GeneratorBasedBuilder):
    """One object per image from a folder with `annotations.csv` or COCO `annotations.json`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Images and boxes from {self.builder_config.root}",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=list(self.builder_config.class_names)),
                "bbox": tfds.features.BBoxFeature(),
                "filename": tfds.features.Text(),
            }),
        )

    def source(self) -> str:
        return f"{len(self.builder_config.examples)} images in {self.builder_config.root}"

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {split: self._generate_examples(split) for split in SPLITS}

    def _image(self, root: Path, example: Example):
        try:
            return load_rgb(root / example.filename, self.builder_config.max_pixels)
        except DataError as exc:  # name the row: the file passed the header check but not decoding
            raise DataError(f"{example.where}: {exc}") from exc

    def _generate_examples(self, split: str):
        root = Path(self.builder_config.root)
        for example in self.builder_config.examples:
            if example.split == split:
                yield example.filename, {
                    "image": self._image(root, example),
                    "label": example.label,
                    "bbox": tfds.features.BBox(*example.box),
                    "filename": example.filename,
                }


def builder(root: Path, examples: list[Example], class_names: list[str], fingerprint: str,
            data_dir: str, max_pixels: int) -> Folder:
    """A builder whose TFDS folder is named by the content fingerprint: new data, new folder."""
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name) or "data"
    config = FolderConfig(name=f"{label}-{fingerprint[:16]}", root=str(root),
                          class_names=tuple(class_names), examples=tuple(examples), max_pixels=max_pixels)
    return Folder(config=config, data_dir=data_dir)
