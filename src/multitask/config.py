"""One configuration tree, `RunConfig`, with a section per pipeline step.

Each step reads one section, and its cache key includes exactly that section, so changing
`train.learning_rate` re-runs training onward while the data steps stay cached.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from multitask.errors import ConfigError

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
# 50 megapixels: a 48 MP phone photo passes; an image header claiming more is refused unread.
DEFAULT_MAX_PIXELS = 50_000_000
# Pillow's own hard limit (twice `Image.MAX_IMAGE_PIXELS`): ours may not exceed it.
PILLOW_MAX_PIXELS = 2 * 89_478_485
# Checked with Keras 3.15 / TF 2.21: fit under MultiWorkerMirroredStrategy fails in its first step,
# for a 10-line model too (FIELD-NOTES.md), so the setting was removed rather than left to fail.
MULTI_WORKER_REMOVED = (
    '"multi_worker" is not supported: Keras 3.15 cannot fit under MultiWorkerMirroredStrategy (its first '
    'step fails, tensorflow#72388, keras#20585); use "mirrored" for all GPUs of one machine'
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
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

    @property
    def fingerprint(self) -> str:
        """The settings plus the content of the data they name, so an edited image is a miss."""
        from multitask.datasets.spec import source_fingerprint
        from multitask.fingerprint import digest

        return digest("DataConfig", self.model_dump_json(), source_fingerprint(self.dataset))


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
    weights: str = Field(
        "imagenet", min_length=1, description="Pretrained presets' backbone weights: `imagenet` (Keras' "
        "cache, downloaded where the network allows), `none`, or a weights file (`.weights.h5`).")
    precision: Literal["auto", "float32", "mixed_bfloat16"] = Field(
        "float32", description="`mixed_bfloat16`: compute in bfloat16, keep weights and outputs in float32; "
        "`auto`: `mixed_bfloat16` on a CPU with native bfloat16 (AMX, AVX512-BF16) and no GPU, else `float32`.")

    @property
    def fingerprint(self) -> str:
        """The settings plus the content of a weights file, so a file replaced in place is a miss."""
        from multitask.fingerprint import digest, hash_file

        path = Path(self.weights).expanduser()
        weights = hash_file(path) if self.weights not in ("imagenet", "none") and path.is_file() else ""
        return digest("ModelConfig", self.model_dump_json(), weights)


class TrainConfig(Section):
    # Loss and weighting chosen by `multitask compare` (docs/multitask.md); the budget, schedule and
    # augmentation by training on data we did not tune on (docs/quality.md).
    epochs: int = Field(60, ge=1, description="The most epochs; training usually stops earlier on a plateau.")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
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
    label_loss_weight: float = Field(1.0, ge=0)
    box_loss_weight: float = Field(10.0, ge=0)
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
    shuffle_buffer: int = Field(4096, ge=1)
    seed: int = Field(0, ge=0, description="Seed for shuffling, augmentation and dropout.")

    @field_validator("distribute", mode="before")
    @classmethod
    def _no_multi_worker(cls, value: Any) -> Any:
        if value == "multi_worker":
            raise ValueError(MULTI_WORKER_REMOVED)
        return value


class EvaluateConfig(Section):
    batch_size: int = Field(128, ge=1)
    grid_size: int = Field(4, ge=1, le=10, description="The prediction PNG shows grid_size^2 test images.")


class RegistryConfig(Section):
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


class ServeConfig(Section):
    """The scoring server (`multitask serve`): what one request may cost."""

    max_request_pixels: int = Field(
        64_000_000, ge=1, description="Pixels the images of one request may declare in all (width x height "
        "summed over its rows); more is answered HTTP 400 before any image is decoded. 64 M: about 0.2 GB of "
        "decoded images and a second of decoding on one core.")
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


# Overrides on top of the field defaults. `seed` reproduces the starting point: its model,
# Adam(1e-3) at a constant rate, categorical + binary cross-entropy with equal weights,
# 10 epochs of batch 32, no augmentation, float32.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "model": {"preset": "seed", "precision": "float32"},
        "train": {"box_loss": "bce", "box_loss_weight": 1.0, "augment_flip": False, "augment_scale": 0.0,
                  "augment_shift": 0.0, "augment_colour": 0.0, "early_stopping_patience": None, "epochs": 10,
                  "lr_schedule": "constant", "weighting": "fixed"},
    },
    "default": {},
}


def _merge(base: dict[str, Any], override: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _parse_value(text: str) -> Any:
    """`--set` values are TOML literals (`3`, `0.5`, `true`, `"x"`); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(item: str) -> dict[str, Any]:
    """`train.learning_rate=0.01` -> {"train": {"learning_rate": 0.01}}, checked against the schema."""
    path, sep, raw = item.partition("=")
    keys = path.strip().split(".")
    if not sep or len(keys) != 2 or not all(keys):
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    section, key = keys
    fields = RunConfig.model_fields
    if section not in fields:
        raise ConfigError(f"unknown config section {section!r} in --set {item!r} (known: {', '.join(fields)})")
    known = fields[section].annotation.model_fields  # type: ignore[union-attr]
    if key not in known:
        raise ConfigError(f"unknown setting {path!r} in --set (known in {section}: {', '.join(known)})")
    return {section: {key: _parse_value(raw.strip())}}


def _readable(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid config{' ' + where if where else ''}: {first['msg'].removeprefix('Value error, ')}"


def load_config(
    preset: str = "default",
    config_file: Path | None = None,
    sets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Preset, then the TOML file, then `--set` items, then explicit overrides (CLI flags)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    tree = copy.deepcopy(PRESETS[preset])
    if config_file is not None:
        try:
            tree = _merge(tree, tomllib.loads(Path(config_file).read_text()))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
    for item in sets or []:
        tree = _merge(tree, parse_set(item))
    tree = _merge(tree, overrides or {})
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_readable(exc)) from exc
