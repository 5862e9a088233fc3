"""The registered model as an MLflow pyfunc: base64 image bytes in, label, score and pixel box out.

MLflow loads it through this module (`loader_module`): it imports `multitask.serving` from the
installed package and calls `_load_pyfunc` on the model's `data/model.keras`, which Keras loads
in safe mode. Nothing in the artifacts is unpickled, so whoever can write a model version cannot
run code on the serving host through it. MLflow's scoring server (`multitask serve`) and
`mlflow.pyfunc.load_model` run it; it answers with the numbers `multitask predict` prints
(`predict_images`, one code path).

A request is checked before any image is decoded: each row's header (format, declared size
against the model's `max_pixels`) and the sum of the declared pixels against the request budget
(`serve.max_request_pixels`); then rows are decoded and predicted one batch at a time.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

import keras
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

from multitask.config import DEFAULT_MAX_PIXELS, ServeConfig
from multitask.errors import DataError
from multitask.images import declared_size, load_rgb
from multitask.model import load
from multitask.predict import predict_images

LOADER_MODULE = __name__  # what the registered model's MLmodel names; `multitask serve` checks it
COLUMN = "image"  # the one input column: base64 of a PNG, JPEG, ... file's bytes
SERVE_CONFIG_ENV = "MULTITASK_SERVE_CONFIG"  # `[serve]` settings as JSON, from `multitask serve`


def serve_config() -> ServeConfig:
    """The server's settings: from `multitask serve` through the environment, else the defaults."""
    return ServeConfig.model_validate_json(os.environ.get(SERVE_CONFIG_ENV) or "{}")


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> ImagePredictor:
    """MLflow's entry point: `data_path` is the model's `.keras` file; `model_config` its
    preprocessing metadata (class names, input size, resize policy, max_pixels)."""
    return ImagePredictor(load(data_path, compile=False), dict(model_config or {}), serve_config())


class ImagePredictor:
    def __init__(self, model: keras.Model, metadata: dict[str, Any], config: ServeConfig):
        self.model, self.metadata, self.config = model, metadata, config
        self.max_pixels = int(metadata.get("max_pixels", DEFAULT_MAX_PIXELS))

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        raws = [_base64(row, value) for row, value in enumerate(_column(model_input))]
        _check_budget(raws, self.max_pixels, self.config.max_request_pixels)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(raws), self.config.batch_size):
            batch = range(start, min(start + self.config.batch_size, len(raws)))
            rows += predict_images(self.model, [_decode(row, raws[row], self.max_pixels) for row in batch],
                                   self.metadata)
        return [{"label": r["label"], "score": r["score"], **r["box"]} for r in rows]


class _Upload(io.BytesIO):
    """Bytes with a name for error messages ("row 3 declares ... pixels")."""

    def __init__(self, raw: bytes, row: int):
        super().__init__(raw)
        self.name = f"row {row}"


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=BAD_REQUEST)  # the scoring server answers HTTP 400


def _column(model_input: Any) -> list[Any]:
    columns = list(getattr(model_input, "columns", []))
    if columns != [COLUMN]:
        raise _bad_request(f'expected one column "{COLUMN}" (base64 image bytes), got {columns}')
    return list(model_input[COLUMN])


def _base64(row: int, value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (TypeError, ValueError, binascii.Error) as exc:
        raise _bad_request(f"row {row}: not base64 image bytes ({exc})") from exc


def _check_budget(raws: list[bytes], max_pixels: int, budget: int) -> None:
    """Every header within the model's limit, and all of them within the request budget."""
    total = 0
    for row, raw in enumerate(raws):
        try:
            width, height = declared_size(_Upload(raw, row), max_pixels)
        except DataError as exc:
            raise _bad_request(str(exc)) from exc
        total += width * height
    if total > budget:
        raise _bad_request(f"the request's {len(raws)} images declare {total:,} pixels in all, over the budget "
                           f"of {budget:,} per request (serve.max_request_pixels): send fewer or smaller images")


def _decode(row: int, raw: bytes, max_pixels: int) -> Any:
    try:
        return load_rgb(_Upload(raw, row), max_pixels)
    except DataError as exc:
        raise _bad_request(str(exc)) from exc
