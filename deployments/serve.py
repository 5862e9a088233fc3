"""Serve the flows without a work pool: `python deployments/serve.py` (Ctrl-C stops).

The same three deployments as `prefect.yaml`, run by this one long-lived process; useful on a
single machine where a worker and a work pool are more than needed.
"""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.predict import predict_flow
from flows.retrain import retrain_flow
from flows.train import train_flow

NIGHTLY = Cron("0 2 * * *", timezone="UTC")


def deployments() -> list:
    return [
        train_flow.to_deployment(name="train", tags=["multitask"]),
        retrain_flow.to_deployment(name="retrain-nightly", schedule=NIGHTLY, tags=["multitask"]),
        predict_flow.to_deployment(name="predict", tags=["multitask"],
                                   parameters={"model": "multitask-shapes@champion", "images": "images"}),
    ]


if __name__ == "__main__":
    serve(*deployments())
