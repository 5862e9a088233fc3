"""docs/configuration.md is generated from the config models (tools/config_doc.py)."""

from __future__ import annotations

import importlib.util

from multitask.config import RunConfig

from helpers import ROOT

spec = importlib.util.spec_from_file_location("config_doc", ROOT / "tools" / "config_doc.py")
config_doc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config_doc)


def test_the_configuration_reference_is_what_the_config_models_say():
    assert config_doc.DOC.read_text() == config_doc.render(), "run python tools/config_doc.py"


def test_every_setting_and_section_is_described():
    for name, section in RunConfig.model_fields.items():
        assert section.annotation.__doc__, f"[{name}] has no docstring"
        undescribed = [key for key, field in section.annotation.model_fields.items() if not field.description]
        assert not undescribed, f"[{name}] settings without a description: {undescribed}"


def test_the_reference_gives_type_bounds_and_choices():
    text = config_doc.render()
    assert '| `train.plateau_factor` | `0.3` | number, > 0, < 1 |' in text
    assert '| `data.image_size` | unset | integer, ≥ 16, ≤ 512, or unset |' in text
    assert '| `data.resize` | `"stretch"` | `"stretch"` \\| `"letterbox"` |' in text
    assert "- `seed`: `model.preset = \"seed\"`" in text
