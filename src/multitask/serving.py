"""The registered model as an MLflow pyfunc: base64 image bytes in, label, score and pixel box out.

MLflow's scoring server (`mlflow models serve`, `multitask serve`) and `mlflow.pyfunc.load_model`
run it; it answers with the numbers `multitask predict` prints (`predict_images`, one code path).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.pyfunc import PythonModel

from multitask.errors import DataError

COLUMN = "image"  # the one input column: base64 of a PNG, JPEG, ... file's bytes


class ImagePredictor(PythonModel):
    """Artifact `keras_model` (the `.keras` file); model config = the preprocessing metadata."""

    def load_context(self, context: Any) -> None:
        from multitask.model import load

        self.model = load(context.artifacts["keras_model"], compile=False)
        self.metadata = dict(context.model_config)

    # No type hints: MLflow would read them as the input schema (the registered signature is ours).
    # MLflow then warns once per process that they are missing; its own "once" filter wins over ours.
    def predict(self, context, model_input, params=None):
        from multitask.predict import predict_images

        images = [_decode(i, value) for i, value in enumerate(_column(model_input))]
        rows = predict_images(self.model, images, self.metadata)
        return [{"label": r["label"], "score": r["score"], **r["box"]} for r in rows]


class _Upload(io.BytesIO):
    """Bytes with a name for error messages ("row 3 declares ... pixels")."""

    def __init__(self, raw: bytes, name: str):
        super().__init__(raw)
        self.name = name


def _column(model_input: Any) -> list[Any]:
    columns = list(getattr(model_input, "columns", []))
    if columns != [COLUMN]:
        raise MlflowException(f'expected one column "{COLUMN}" (base64 image bytes), got {columns}',
                              error_code=BAD_REQUEST)
    return list(model_input[COLUMN])


def _decode(row: int, value: Any) -> Any:
    from multitask.images import load_rgb

    try:
        raw = base64.b64decode(value, validate=True)
        return load_rgb(_Upload(raw, f"row {row}"))
    except (TypeError, ValueError, binascii.Error) as exc:
        raise MlflowException(f"row {row}: not base64 image bytes ({exc})", error_code=BAD_REQUEST) from exc
    except DataError as exc:
        raise MlflowException(str(exc), error_code=BAD_REQUEST) from exc
