"""drift_flow: does a dataset look like the data a registered version was trained on?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import workspace
from multitask.config import RunConfig
from tasks.drift import measure_drift
from tasks.versions import resolve_model


@flow(name="drift")
def drift_flow(against: str, config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Resolve `against` (NAME@ALIAS or NAME/VERSION), prepare `config.data` at the model's input
    size, and test each feature of every split against the version's training split."""
    workspace.ensure()
    steps = Steps()
    version = steps.run(resolve_model, cached=False, reference=against)
    _, snapshot, _ = steps.data_for(version, config)
    report = steps.run(measure_drift, version=version, snapshot=snapshot, dataset=config.data.dataset)
    return {"dataset": config.data.dataset, "against": report.against, "drift": report.drift,
            "drifted": report.drifted, "features": json.loads(Path(report.path).read_text())["features"],
            "steps": steps.states}
