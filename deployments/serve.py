"""Serve the flows without a work pool: `python deployments/serve.py` (Ctrl-C stops).

The deployments of `prefect.yaml` (the one place they are defined: names, entrypoints,
parameters, schedules), run by this one long-lived process; useful on a single machine where
a worker and a work pool are more than needed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = Path(__file__).with_name("prefect.yaml")


def _flow(entrypoint: str) -> Any:
    """`flows/train.py:train_flow` -> the flow object."""
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def _schedule(s: dict[str, Any]) -> Cron | Interval:
    if "cron" in s:
        return Cron(s["cron"], timezone=s.get("timezone", "UTC"))
    return Interval(s["interval"])


def deployments() -> list:
    """One `RunnerDeployment` per deployment of prefect.yaml (schedules and event triggers too)."""
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    return [
        _flow(d["entrypoint"]).to_deployment(
            name=d["name"], description=d.get("description"), tags=d.get("tags"),
            parameters=d.get("parameters") or {},
            schedules=[_schedule(s) for s in d.get("schedules") or []],
            triggers=[DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
                      for t in d.get("triggers") or []],
        )
        for d in spec["deployments"]
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    serve(*deployments())
