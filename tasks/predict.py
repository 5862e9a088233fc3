"""Prediction step: a registered model over a folder of images, written as CSV and JSON."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from multitask import atomic, registry
from tasks import retries


@task(name="predict_folder", **retries.IO)
def predict_folder(model: str, images: str, output: str) -> dict:
    from multitask.predict import images_in, predict, predictions_csv

    model_obj, metadata = registry.load_registered(model)
    rows = predict(model_obj, images_in(Path(images)), metadata)
    out = Path(output)
    csv_path = atomic.write_bytes(out / "predictions.csv", predictions_csv(rows))
    json_path = atomic.write_json(out / "predictions.json", rows)
    return {"count": len(rows), "csv": str(csv_path), "json": str(json_path)}
