"""Prediction step: a registered model over a folder of images, written as CSV and JSON."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from prefect import task

from multitask import atomic, registry
from tasks import retries


def _csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["image", "label", "score", "xmin", "ymin", "xmax", "ymax"])
    for row in rows:
        box = row["box"]
        writer.writerow([row["image"], row["label"], row["score"], box["xmin"], box["ymin"], box["xmax"], box["ymax"]])
    return out.getvalue().encode()


@task(name="predict_folder", **retries.IO)
def predict_folder(model: str, images: str, output: str) -> dict:
    from multitask.predict import images_in, predict

    model_obj, metadata = registry.load_registered(model)
    rows = predict(model_obj, images_in(Path(images)), metadata)
    out = Path(output)
    csv_path = atomic.write_bytes(out / "predictions.csv", _csv(rows))
    json_path = atomic.write_json(out / "predictions.json", rows)
    return {"count": len(rows), "csv": str(csv_path), "json": str(json_path)}
