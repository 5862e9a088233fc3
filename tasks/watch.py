"""Watch steps: look at a dataset, and announce a change as a Prefect event (a deployment
trigger on that event starts the retraining)."""

from __future__ import annotations

from prefect import task
from prefect.events import emit_event

from multitask import workspace
from multitask.watch import Look, look
from tasks import retries

CHANGED = "multitask.dataset.changed"


@task(name="look_at_dataset", **retries.IO)
def look_at_dataset(spec: str) -> Look:
    return look(spec, workspace.root() / "watch")


@task(name="announce_change")
def announce_change(seen: Look) -> None:
    """The event's resource is the dataset spec; its payload, the old and new fingerprints."""
    emit_event(event=CHANGED, resource={"prefect.resource.id": seen.spec, "prefect.resource.name": seen.spec},
               payload={"dataset": seen.spec, "old": seen.old, "new": seen.new})
