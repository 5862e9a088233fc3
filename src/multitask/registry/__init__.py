"""Every MLflow call lives in this package, one module per job.

`store` (the client and its URI), `references` (NAME@ALIAS, NAME/VERSION), `lineage` (what a
model was made from), `runs` (logging and registering a trained model), `versions` (aliases,
lookups, promotion, tags), `loading` (downloading and safe loading), `peek` (one version's tags
and aliases read without MLflow), `tags` (the fingerprint tag and the tags-and-aliases record that
`peek` shares with the modules that use MLflow), `studies` (a tuning study's runs), `cards` (a
version's model card).

Each name loads its module on first use (`__getattr__` below): importing the package costs
nothing, so a flow run whose steps are all cached imports neither MLflow nor TensorFlow; it only
peeks at the registry.
"""

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "CHALLENGER", "CHAMPION", "LINEAGE_TAG", "aliases", "card", "champion", "changed_sections", "client",
    "fetch", "fetch_servable", "find_version", "lineage_tags", "list_models", "load_model", "load_registered",
    "log_card", "log_drift", "log_trial",
    "model_uri", "parse_reference", "preprocessing", "promote", "register", "reregister", "resolve", "run_file",
    "run_files", "run_url", "same_data", "set_tags", "show", "version_matches",
]

if TYPE_CHECKING:
    from multitask.registry.cards import card, log_card
    from multitask.registry.lineage import LINEAGE_TAG, changed_sections, lineage_tags, same_data
    from multitask.registry.loading import fetch, fetch_servable, load_model, load_registered, run_file, run_files
    from multitask.registry.peek import aliases, version_matches
    from multitask.registry.references import model_uri, parse_reference
    from multitask.registry.runs import log_drift, register, reregister, run_url
    from multitask.registry.store import client
    from multitask.registry.studies import log_trial
    from multitask.registry.versions import (
        CHALLENGER,
        CHAMPION,
        champion,
        find_version,
        list_models,
        preprocessing,
        promote,
        resolve,
        set_tags,
        show,
    )

_MODULE_OF = {
    "LINEAGE_TAG": "lineage", "changed_sections": "lineage", "lineage_tags": "lineage", "same_data": "lineage",
    "fetch": "loading", "fetch_servable": "loading", "load_model": "loading", "load_registered": "loading",
    "run_file": "loading", "run_files": "loading",
    "aliases": "peek", "version_matches": "peek",
    "model_uri": "references", "parse_reference": "references",
    "register": "runs", "reregister": "runs", "run_url": "runs", "log_drift": "runs",
    "client": "store",
    "card": "cards", "log_card": "cards",
    "log_trial": "studies",
    **dict.fromkeys(("CHALLENGER", "CHAMPION", "champion", "find_version", "list_models", "preprocessing",
                     "promote", "resolve", "set_tags", "show"), "versions"),
}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"multitask.registry.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
