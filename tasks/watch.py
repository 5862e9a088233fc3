"""Watch steps: look at a dataset, announce a change as a Prefect event (a deployment trigger on
that event starts the retraining), and only then remember the look (at least once: a change whose
event did not go out is seen and announced again by the next look)."""

from __future__ import annotations

import uuid

from prefect import task
from prefect.events import Event
from prefect.events.clients import get_events_client
from prefect.utilities.asyncutils import run_coro_as_sync

from multitask import workspace
from multitask.watch import Look, look, remember
from tasks import retries

CHANGED = "multitask.dataset.changed"
DRIFTED = "multitask.dataset.drifted"


def _state_dir():
    return workspace.root() / "watch"


@task(name="look_at_dataset", **retries.IO)
def look_at_dataset(spec: str) -> Look:
    return look(spec, _state_dir())


@task(name="announce_change", **retries.IO)
def announce_change(seen: Look) -> None:
    """The event's resource is the dataset spec; its payload, the old and new fingerprints.

    Sent with the events client itself, not the background queue `emit_event` uses: that one
    logs a failure and carries on. Here a failure fails the step (and it is retried), and the
    step ends only once the server has the event (a ping answered after it). The event's id
    follows from the change, so an event sent again for the same change is the same event.
    """
    run_coro_as_sync(_send(_event(CHANGED, seen, {})))


@task(name="announce_drift", **retries.IO)
def announce_drift(seen: Look, against: str, drifted: list[str]) -> None:
    """As `announce_change`, for a change that drifted from `against`'s data: the payload also names
    that version and the features that moved."""
    run_coro_as_sync(_send(_event(DRIFTED, seen, {"against": against, "drifted": drifted})))


def _event(name: str, seen: Look, payload: dict) -> Event:
    change = f"{seen.spec}#{seen.old}->{seen.new}"
    return Event(event=name, id=uuid.uuid5(uuid.NAMESPACE_URL, change if name == CHANGED else f"{name}:{change}"),
                 resource={"prefect.resource.id": seen.spec, "prefect.resource.name": seen.spec},
                 payload={"dataset": seen.spec, "old": seen.old, "new": seen.new, **payload})


async def _send(event: Event) -> None:
    async with get_events_client(checkpoint_every=1) as client:  # a checkpoint pings after each event
        await client.emit(event)


@task(name="remember_look", **retries.IO)
def remember_look(seen: Look) -> None:
    remember(seen, _state_dir())
