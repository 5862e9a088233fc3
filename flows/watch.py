"""watch_flow: has the dataset changed since the last look? If so, emit `multitask.dataset.changed`,
or with `trigger="drift"`, `multitask.dataset.drifted` when the change moved the data away from what
the model was trained on.

Runs every 10 minutes, so it stays light: it imports neither TensorFlow nor MLflow (no
`flows.steps`, whose steps train and evaluate) unless a change must be checked for drift.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from multitask import workspace
from multitask.config import DataConfig, RunConfig, default_model_name
from multitask.errors import UserError
from multitask.watch import Look
from tasks.watch import announce_change, announce_drift, look_at_dataset, remember_look


@flow(name="watch")
def watch_flow(dataset: str = DataConfig().dataset, trigger: Literal["change", "drift"] = "change",
               against: str | None = None) -> dict[str, Any]:
    """Look at a folder dataset (cheaply: names, sizes, times; contents only when those moved).
    When its content fingerprint differs from the last look's: with `trigger="change"`, emit the
    change event; with `"drift"`, check the data against `against` (default: the dataset's model's
    champion) and emit the drift event only when it drifted; when it cannot be checked (no such
    version, or one registered without a profile of its data), the change event instead. The look is
    remembered only after that, so a change is announced (or checked) at least once."""
    workspace.ensure()
    seen = look_at_dataset(dataset)
    if seen.new is None:
        get_run_logger().info("%s is not a folder dataset: nothing on disk changes", dataset)
    result: dict[str, Any] = seen.model_dump(exclude={"listing"})
    if seen.changed and trigger == "change":
        announce_change(seen)
    elif seen.changed:
        result["drift"] = _announce_if_drifted(seen, against or f"{default_model_name(dataset)}@champion")
    remember_look(seen)
    return result


def _announce_if_drifted(seen: Look, against: str) -> dict[str, Any] | None:
    """Check the changed data for drift against `against`; emit the drift event when it drifted,
    the change event when it cannot be checked. Returns what was found (None: not checked)."""
    from flows.drift import drift_flow  # TensorFlow: only for a change to check

    try:
        found = drift_flow(against=against, config=RunConfig(data=DataConfig(dataset=seen.spec)))
    except UserError as exc:  # no such version, or one registered without a profile of its data
        get_run_logger().warning("cannot check %s for drift (%s): announcing the change instead", seen.spec, exc)
        announce_change(seen)
        return None
    if found["drift"]:
        announce_drift(seen, found["against"], found["drifted"])
    else:
        get_run_logger().info("%s changed but has not drifted from %s's data", seen.spec, found["against"])
    return {key: found[key] for key in ("against", "drift", "drifted")}
