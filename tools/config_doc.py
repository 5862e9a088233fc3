"""docs/configuration.md, generated from the config models' own field descriptions, so the
reference and the schema cannot drift apart (tests/test_config_doc.py fails when they do).

    python tools/config_doc.py          # rewrite docs/configuration.md
    python tools/config_doc.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic.fields import FieldInfo

from multitask.config import RunConfig
from multitask.config_loader import PRESETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
INTRO = """# Configuration

Every setting of `multitask train`, `retrain`, `evaluate`, `serve`, `data` and `compare`, by
section. Settings apply in this order: the preset (`--preset`, `default` unless given), a TOML file
(`--config FILE.toml`, a table per section), each `--set section.key=value` (a TOML literal:
`3`, `0.5`, `true`, `"letterbox"`; anything else is taken as text), then `--dataset` and `--epochs`.
An unknown section or setting, or a value out of range, is one `error:` line (exit 2).

```toml
[data]
dataset = "folder:/data/my-set"
[train]
max_minutes = 30
```

Generated from `src/multitask/config.py` by `python tools/config_doc.py`: edit the descriptions
there, not here.
"""


def allowed(field: FieldInfo) -> str:
    """The values a field takes, in words: its type, choices and bounds."""
    kinds, optional = [], False
    for kind in typing.get_args(field.annotation) if _is_union(field.annotation) else (field.annotation,):
        if kind is type(None):
            optional = True
        else:
            kinds.append(_kind(kind))
    bounds = [_bound(item) for item in field.metadata if _bound(item)]
    text = " or ".join(kinds) + (f", {', '.join(bounds)}" if bounds else "")
    return text + (", or unset" if optional else "")


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _kind(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in typing.get_args(kind))
    return {bool: "`true` or `false`", int: "integer", float: "number", str: "text"}.get(kind, str(kind))


def _bound(item: Any) -> str:
    symbols = {Ge: ("≥", "ge"), Gt: (">", "gt"), Le: ("≤", "le"), Lt: ("<", "lt")}
    for kind, (symbol, name) in symbols.items():
        if isinstance(item, kind):
            return f"{symbol} {getattr(item, name):,}"
    if isinstance(item, MinLen):
        return "not empty" if item.min_length == 1 else f"at least {item.min_length} characters"
    if isinstance(item, MaxLen):
        return f"at most {item.max_length} characters"
    return ""


def default(field: FieldInfo) -> str:
    return "unset" if field.default is None else f"`{json.dumps(field.default)}`"


def section_table(name: str, model: type) -> list[str]:
    lines = [f"## `[{name}]`", "", inspect.cleandoc(model.__doc__ or ""), "",
             "| setting | default | allowed | what it does |", "|---|---|---|---|"]
    for key, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}.{key}` | {default(field)} | {allowed(field)} | {description} |")
    return [*lines, ""]


def preset_lines() -> list[str]:
    lines = ["## Presets", "", "`--preset default` is the defaults above. The other presets change these settings:", ""]
    for preset, sections in PRESETS.items():
        changed = [f"`{section}.{key} = {json.dumps(value)}`" for section, fields in sections.items()
                   for key, value in fields.items()]
        if changed:
            lines.append(f"- `{preset}`: " + ", ".join(changed) + ".")
    return [*lines, ""]


def render() -> str:
    lines = [INTRO]
    for name, field in RunConfig.model_fields.items():
        lines += section_table(name, field.annotation)
    lines += preset_lines()
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run python tools/config_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
