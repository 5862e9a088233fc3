"""Model references: `NAME@ALIAS` or `NAME/VERSION`, checked before they reach MLflow."""

from __future__ import annotations

import re

from multitask.config import MODEL_NAME_PATTERN
from multitask.errors import UserError

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_NAME = re.compile(MODEL_NAME_PATTERN)


def parse_reference(reference: str) -> tuple[str, str, str]:
    """`NAME@ALIAS` -> (name, "@", alias); `NAME/VERSION` -> (name, "/", version); else refused."""
    name, at, alias = reference.partition("@")
    if not at:
        name, slash, version = reference.partition("/")
        if not slash or not version.isdigit():
            raise UserError(f"model reference {reference!r}: expected NAME@ALIAS or NAME/VERSION")
    elif not _ALIAS.match(alias):
        raise UserError(f"model alias {alias!r} is not valid (letters, digits, _ and -)")
    if not _NAME.match(name):
        raise UserError(f"model name {name!r} is not valid (letters, digits, _ . and -)")
    return (name, "@", alias) if at else (name, "/", version)


def model_uri(reference: str) -> str:
    return "models:/" + "".join(parse_reference(reference))
