"""A version's model card: rendered from what the registry holds, and logged with the version.

The card is rendered again from the registry each time (`card`), so it states the version's
current aliases and gate decision; `log_card` stores that rendering as `model_card.md` in the
version's run (at registration, and again once the gate has decided).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multitask import workspace
from multitask.model_card import render
from multitask.registry.loading import run_files
from multitask.registry.store import client
from multitask.registry.tags import REREGISTERED_FROM
from multitask.registry.versions import preprocessing, resolve

CARD = "model_card.md"
RUN_FILES = {"evaluation": "metrics.json", "history": "history.json", "config": "config.json",
             "profile": "profile.json"}


def facts(reference: str) -> dict[str, Any]:
    """What `multitask.model_card.render` needs, for NAME@ALIAS or NAME/VERSION. A version
    registered again (`models reregister`) takes its files from the run of the version it copies;
    a file its run does not hold (older versions) is None."""
    version = resolve(reference)
    mv = client().get_model_version(version.name, version.version)
    source = f"{version.name}/{mv.tags.get(REREGISTERED_FROM, version.version)}"
    run_id, logged = resolve(source).run_id, run_files(source)
    files: dict[str, Any] = {}
    with workspace.scratch("card") as tmp:
        for key, name in RUN_FILES.items():
            path = Path(client().download_artifacts(run_id, name, str(tmp))) if name in logged else None
            files[key] = json.loads(path.read_text()) if path else None
    needs = preprocessing(version)
    return {"name": version.name, "version": version.version, "aliases": sorted(mv.aliases), "run_id": version.run_id,
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "tags": dict(mv.tags), "class_names": needs.get("class_names", []), "image_size": needs.get("image_size"),
            **files}


def card(reference: str) -> str:
    return render(facts(reference))


def log_card(reference: str) -> str:
    """Render the card and store it as `model_card.md` in the version's run; returns it."""
    text = card(reference)
    client().log_text(resolve(reference).run_id, text, CARD)
    return text
