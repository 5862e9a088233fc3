"""Every MLflow call lives in this package, one module per job.

`store` (the client and its URI), `references` (NAME@ALIAS, NAME/VERSION), `lineage` (what a
model was made from), `runs` (logging and registering a trained model), `versions` (aliases,
lookups, promotion, tags), `loading` (downloading and safe loading).

`runs` and `loading` import TensorFlow; they load on first use of one of their names
(`__getattr__` below), so a flow run whose steps are all cached only checks the registry.
"""

import importlib
from typing import TYPE_CHECKING, Any

from multitask.registry.lineage import LINEAGE_TAG, changed_sections, lineage_tags
from multitask.registry.references import model_uri, parse_reference
from multitask.registry.store import client
from multitask.registry.versions import (
    CHALLENGER,
    CHAMPION,
    aliases,
    champion,
    find_version,
    list_models,
    preprocessing,
    promote,
    resolve,
    set_tags,
    show,
    version_matches,
)

__all__ = [
    "CHALLENGER", "CHAMPION", "LINEAGE_TAG", "aliases", "champion", "changed_sections", "client",
    "fetch", "find_version", "lineage_tags", "list_models", "load_model", "load_registered", "model_uri",
    "parse_reference", "preprocessing", "promote", "register", "resolve", "run_url", "set_tags", "show",
    "version_matches",
]

if TYPE_CHECKING:
    from multitask.registry.loading import fetch, load_model, load_registered
    from multitask.registry.runs import register, run_url

_ON_FIRST_USE = {"fetch": "loading", "load_model": "loading", "load_registered": "loading",
                 "register": "runs", "run_url": "runs"}


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(f"multitask.registry.{_ON_FIRST_USE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
