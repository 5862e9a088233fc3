"""One configuration tree, `RunConfig`, with a section per pipeline step.

Each step reads one section, and its cache key includes exactly that section, so changing
`train.learning_rate` re-runs training onward while the data steps stay cached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
# 50 megapixels: a 48 MP phone photo passes; an image header claiming more is refused unread.
DEFAULT_MAX_PIXELS = 50_000_000
# Pillow's own hard limit (twice `Image.MAX_IMAGE_PIXELS`): ours may not exceed it.
PILLOW_MAX_PIXELS = 2 * 89_478_485
# Checked with Keras 3.15 / TF 2.21: fit under MultiWorkerMirroredStrategy fails in its first step,
# for a 10-line model too, so the setting was removed rather than left to fail.
MULTI_WORKER_REMOVED = (
    '"multi_worker" is not supported: Keras 3.15 cannot fit under MultiWorkerMirroredStrategy (its first '
    'step fails, tensorflow#72388, keras#20585); use "mirrored" for all GPUs of one machine'
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    """Which data, how much of it (generated `shapes`), and how images become model inputs."""

    dataset: str = Field("shapes", description="Dataset spec: `shapes`, `tfds:NAME`, `folder:PATH`.")
    train_size: int = Field(3000, ge=1, description="Generated training examples (`shapes` only).")
    validation_size: int = Field(300, ge=1, description="Generated validation examples (`shapes` only).")
    test_size: int = Field(500, ge=1, description="Generated test examples (`shapes` only).")
    seed: int = Field(0, ge=0, description="Generator seed: the same seed gives the same dataset.")
    image_size: int | None = Field(
        None, ge=16, le=512, description="Side of the square model input, pixels. Unset: from the objects' "
        "sizes, 64-128 (`multitask.sizing`); 64 for the `seed` preset; 224 for the pretrained presets. "
        "Set for the `default` preset: a multiple of 8.")
    resize: Literal["stretch", "letterbox"] = Field(
        "stretch", description="How images become square: stretch, or scale and pad (boxes follow)."
    )
    multi_object: Literal["error", "skip", "largest"] | None = Field(
        None, description="Images with several objects: folder default `error`, TFDS default `skip`."
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, le=PILLOW_MAX_PIXELS,
        description="Folder images whose header declares more pixels are refused before decoding.",
    )


# Input side per model preset when `data.image_size` is not set; None: from the data (`multitask.sizing`).
PRESET_IMAGE_SIZES = {"seed": 64, "default": None, "mobilenet_v3_small": 224, "efficientnet_v2_b0": 224}
# The default model's smallest map is 1/8 of its input, upsampled to meet the larger ones.
DEFAULT_MODEL_STRIDE = 8


def image_size_problem(preset: str, image_size: int) -> str | None:
    """Why `preset` cannot take `image_size`, or None when it can."""
    if preset != "default" or image_size % DEFAULT_MODEL_STRIDE == 0:
        return None
    near = max(DEFAULT_MODEL_STRIDE, round(image_size / DEFAULT_MODEL_STRIDE) * DEFAULT_MODEL_STRIDE)
    return (f"the default model halves its input three times: data.image_size must be a multiple of "
            f"{DEFAULT_MODEL_STRIDE}, got {image_size} (try {near})")


class ModelConfig(Section):
    """The architecture, its initial weights and the number format it computes in."""

    preset: Literal["seed", "default", "mobilenet_v3_small", "efficientnet_v2_b0"] = Field(
        "default", description="`seed`: the starting point's model, exactly; `default`: our CNN from "
        "scratch; `mobilenet_v3_small`, `efficientnet_v2_b0`: a keras.applications backbone with our heads.",
    )
    seed: int = Field(0, ge=0, description="Seed for the initial weights.")
    label_pooling: Literal["global", "box"] = Field(
        "box", description="`default` preset's label head: global average pooling only, or also the "
        "features inside the predicted box (`box`).")
    box_window: float = Field(
        0.5, ge=0, le=1, description="`default` preset's box head: read each edge only within +- this "
        "share of the image's side around where the head locates the object; 0 reads the whole image.")
    stem: Literal["pool", "strided"] = Field(
        "pool", description="`default` preset's first block: a 3x3 conv at full size then a max pool (`pool`), "
        "or a 3x3 conv of stride 2 (`strided`: the same 1/2-size output for a quarter of the stem's compute).")
    box_resolution: Literal["half", "quarter"] = Field(
        "half", description="`default` preset's box head: score maps at 1/2 of the input's side, or at 1/4 "
        "(`quarter`: no upsampling to 1/2; edges stay sub-pixel through the soft-argmax).")
    weights: str = Field(
        "imagenet", min_length=1, description="Pretrained presets' backbone weights: `imagenet` (Keras' "
        "cache, downloaded where the network allows), `none`, or a weights file (`.weights.h5`).")
    precision: Literal["auto", "float32", "mixed_bfloat16"] = Field(
        "float32", description="`mixed_bfloat16`: compute in bfloat16, keep weights and outputs in float32; "
        "`auto`: `mixed_bfloat16` on a CPU with native bfloat16 (AMX, AVX512-BF16) and no GPU, else `float32`.")


class TrainConfig(Section):
    """Training: budget, optimizer and schedule, losses and their weighting, augmentation."""

    # Loss and weighting chosen by `multitask compare` (docs/multitask.md); the budget, schedule and
    # augmentation by training on data we did not tune on (docs/quality.md).
    epochs: int = Field(60, ge=1, description="The most epochs; training usually stops earlier on a plateau.")
    batch_size: int = Field(32, ge=1, description="Images per training step.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate (the start of the schedule).")
    lr_schedule: Literal["constant", "cosine", "plateau"] = Field(
        "plateau", description="`cosine`: decay the learning rate to 0 over `epochs` (the most); "
        "`plateau`: multiply it by `plateau_factor` after `plateau_patience` epochs without a better score.",
    )
    plateau_factor: float = Field(0.3, gt=0, lt=1, description="`plateau` schedule: the factor per plateau.")
    plateau_patience: int = Field(3, ge=1, description="`plateau` schedule: epochs without a better score.")
    box_loss: str = Field(
        "huber+giou", pattern=r"^(bce|(huber|iou|giou|ciou)(\+(huber|iou|giou|ciou))*)$",
        description="`bce` (the seed's), or terms huber, iou, giou, ciou joined by '+'.",
    )
    huber_delta: float = Field(0.02, gt=0, description="Huber transition point, in image fractions.")
    weight_decay: float = Field(
        0.0, ge=0, description="Decoupled weight decay (AdamW's): each step shrinks every weight by "
        "learning rate x this; 0 is off.")
    ema_momentum: float = Field(
        0.0, ge=0, lt=1, description="Validate, keep and register the exponential moving average of "
        "the weights, updated every step with this momentum (0.99: about the last 100 steps); 0 is off.")
    label_loss_weight: float = Field(1.0, ge=0, description="Weight of the label head's cross-entropy.")
    box_loss_weight: float = Field(10.0, ge=0, description="Weight of the box head's loss (`box_loss`).")
    where_loss_weight: float = Field(
        1.0, ge=0, description="`default` preset: weight of a loss that puts the box head's "
        "where map inside the true box (`losses.WhereLoss`); 0 is off.")
    edge_loss_weight: float = Field(
        1.0, ge=0, description="`default` preset: weight of a loss that puts each edge's softmax over its "
        "positions on the true edge (`losses.EdgeLoss`, GFL's distribution focal loss, Li et al. 2020); 0 is off.")
    weighting: Literal["fixed", "uncertainty", "dwa"] = Field(
        "dwa", description="How head losses are weighted: the fixed weights above, learned "
        "uncertainty weights (starting from them), or Dynamic Weight Average (scaling them).",
    )
    dwa_temperature: float = Field(2.0, gt=0, description="Dynamic Weight Average temperature T.")
    freeze_epochs: int = Field(3, ge=0, description="Pretrained presets: epochs training the heads alone, "
                               "backbone frozen, before all layers train.")
    finetune_learning_rate_factor: float = Field(
        0.1, gt=0, le=1, description="Pretrained presets: the learning rate of the all-layers phase, "
        "as a share of `learning_rate`.")
    early_stopping_patience: int | None = Field(
        8, ge=1, description="Stop after this many epochs without a better validation score "
        "(label accuracy + box mean IoU) or without more validation images right (label, box at "
        "IoU >= 0.5, box at IoU >= 0.75), or once all but 1 in 200 validation images are right; "
        "the best epoch on the score is kept.")
    max_minutes: float | None = Field(
        None, gt=0, description="Stop before another epoch would take training past this many minutes.")
    # Measured on 2 CPU cores: 16 steps per tf.function call trained the seed model 1.4-1.6x
    # faster than 1 (Python overhead per step); XLA (jit_compile) was 2x slower, so it is off.
    steps_per_execution: int = Field(16, ge=1, description="Batches run per call into the TF graph.")
    distribute: Literal["none", "mirrored"] = Field(
        "none", description="tf.distribute strategy: one device, or all of this machine's GPUs "
        "(its logical CPU devices when it has no GPU)."
    )
    # Off by default: a mirrored glyph or letter is another glyph (b/d), so flipping is opt-in.
    augment_flip: bool = Field(False, description="Random horizontal flip (the box flips with it).")
    augment_scale: float = Field(0.25, ge=0, lt=1, description="Random zoom by a factor in "
                                 "[1 - scale, 1 + scale], limited so the object still fits; 0 is off.")
    augment_shift: float = Field(1.0, ge=0, le=1, description="Random shift of the object: 0 keeps it "
                                 "where the zoom puts it, 1 moves it anywhere it fits in the frame.")
    augment_colour: float = Field(0.2, ge=0, lt=1, description="Random brightness (+-), contrast and "
                                  "saturation (x 1 +-) per image; 0 is off.")
    shuffle_buffer: int = Field(4096, ge=1, description="Training examples shuffled at a time (tf.data).")
    seed: int = Field(0, ge=0, description="Seed for shuffling, augmentation and dropout.")

    @field_validator("distribute", mode="before")
    @classmethod
    def _no_multi_worker(cls, value: Any) -> Any:
        if value == "multi_worker":
            raise ValueError(MULTI_WORKER_REMOVED)
        return value


class EvaluateConfig(Section):
    """Evaluation on the test split (`multitask evaluate`, and after every training)."""

    batch_size: int = Field(128, ge=1, description="Images per evaluation step.")
    grid_size: int = Field(4, ge=1, le=10, description="The prediction PNG shows grid_size^2 test images.")
    small_area: float = Field(32.0 ** 2, gt=0, description="Objects whose true box covers fewer pixels of the "
                              "original image are the `small` slice (COCO's 32 x 32).")
    large_area: float = Field(96.0 ** 2, gt=0, description="Objects whose true box covers at least this many "
                              "pixels of the original image are the `large` slice (COCO's 96 x 96); between "
                              "the two, `medium`.")

    calibrate: bool = Field(False, description="Fit a temperature for the label head's scores on the validation "
                            "split after training (`multitask.calibration`) and register the calibrated model: "
                            "the predicted classes stay, the scores say how often they are right.")

    @model_validator(mode="after")
    def _sizes_in_order(self) -> EvaluateConfig:
        if self.large_area <= self.small_area:
            raise ValueError(f"evaluate.large_area ({self.large_area}) must be above evaluate.small_area "
                             f"({self.small_area})")
        return self


class RegistryConfig(Section):
    """Where trained models are registered in MLflow."""

    model_name: str | None = Field(
        None, pattern=MODEL_NAME_PATTERN,
        description="Registered model name in MLflow; unset, it follows the dataset (`default_model_name`).",
    )


def default_model_name(dataset: str) -> str:
    """`multitask-shapes`, `multitask-<folder's name>`, `multitask-<tfds name>`, in MLflow's alphabet.

    One name per dataset keeps a model of one dataset from ever being gated against another's.
    """
    kind, _, rest = dataset.strip().partition(":")
    if kind == "folder" and rest:
        name = Path(rest).expanduser().resolve().name
    elif kind == "tfds" and rest:
        name = rest.partition(":")[0]
    else:
        name = dataset.strip()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "data"
    return f"multitask-{name}"[:100]


class GateConfig(Section):
    """When a retrained challenger replaces the champion (see `multitask.gate`)."""

    min_accuracy: float = Field(0.8, ge=0, le=1, description="Floor for the label head's test accuracy.")
    min_mean_iou: float = Field(0.6, ge=0, le=1, description="Floor for the box head's test mean IoU.")
    tolerance: float = Field(0.01, ge=0, le=1, description="Most a head may lose to the champion.")
    slice_tolerance: float | None = Field(
        None, ge=0, le=1, description="Most a head may lose to the champion on any one slice (a class, an object "
        "size) with at least `min_slice_count` test images; unset, slices are not judged. 0.05 is a sound value "
        "with 100 or more images per slice.")
    min_slice_count: int = Field(100, ge=1, description="Test images a slice needs for `slice_tolerance` to "
                                 "judge it: on fewer, a few images move its numbers by more than the tolerance.")


class ServeConfig(Section):
    """The scoring server (`multitask serve`): what one request may cost."""

    max_request_pixels: int = Field(
        64_000_000, ge=1, description="Pixels the images of one request may declare in all (width x height "
        "summed over its rows); more is answered HTTP 400 before any image is decoded. 64 M: about 0.2 GB of "
        "decoded 8-bit RGB images (16-bit ones take several times more while converted) and a second of "
        "decoding on one core.")
    batch_size: int = Field(16, ge=1, le=1024, description="Rows decoded and predicted at once: memory holds one "
                            "batch of decoded images, not the whole request.")


class RunConfig(Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    gate: GateConfig = GateConfig()
    serve: ServeConfig = ServeConfig()

    @property
    def model_name(self) -> str:
        """The registered model name: `registry.model_name`, always set once validated."""
        assert self.registry.model_name is not None
        return self.registry.model_name

    @model_validator(mode="after")
    def _fill_defaults_from_other_sections(self) -> RunConfig:
        """The model name follows the dataset; the image size follows the model preset.
        (Frozen: set once, while validating.)"""
        if self.registry.model_name is None:
            named = RegistryConfig(model_name=default_model_name(self.data.dataset))
            object.__setattr__(self, "registry", named)
        if "image_size" not in self.data.model_fields_set:
            sized = self.data.model_copy(update={"image_size": PRESET_IMAGE_SIZES[self.model.preset]})
            object.__setattr__(self, "data", sized)
        if self.data.image_size is not None and (problem := image_size_problem(self.model.preset,
                                                                                self.data.image_size)):
            raise ValueError(problem)
        return self
