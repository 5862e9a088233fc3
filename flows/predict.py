"""predict_flow: label, score and pixel box for every image in a folder, with a registered model."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from multitask import workspace
from tasks.predict import predict_folder


@flow(name="predict")
def predict_flow(model: str = "multitask-shapes@champion", images: str = "images",
                 output: str | None = None) -> dict:
    """Writes `predictions.csv` and `predictions.json` to `output` (default: IMAGES/predictions)."""
    workspace.ensure()
    return predict_folder(model=model, images=images, output=output or str(Path(images) / "predictions"))
