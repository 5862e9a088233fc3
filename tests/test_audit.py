"""tools/audit.py, the vulnerability check in `make lint`, and the dependency floors it guards."""

from __future__ import annotations

import importlib.util
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import ROOT

spec = importlib.util.spec_from_file_location("audit", ROOT / "tools" / "audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)
ADVISORIES = tomllib.loads(audit.ADVISORIES.read_text())["advisory"]


def test_a_version_below_a_fix_is_reported_and_the_fix_itself_is_not():
    found = audit.listed_findings({"pillow": "10.0.0", "keras": "3.14.0", "numpy": "1.0"}, ADVISORIES)
    assert "pillow 10.0.0: CVE-2023-4863 (fixed in 10.0.1)" in found
    assert not [line for line in found if line.startswith(("keras", "numpy"))]
    assert audit.listed_findings({"keras": "3.13.1"}, ADVISORIES) == [
        "keras 3.13.1: GHSA-xfhx-r7ww-5995 (fixed in 3.13.2)", "keras 3.13.1: GHSA-4f3f-g24h-fr8m (fixed in 3.14.0)",
        "keras 3.13.1: GHSA-hqp4-2352-xf5r (fixed in 3.14.0)"]


def test_every_floor_is_at_or_above_the_fixes_listed_for_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    floors = {canonicalize_name(r.name): Version(s.version) for r in requirements
              for s in r.specifier if s.operator == ">="}
    below = [f"{a['package']} floor {floors[a['package']]} < {a['fixed']} ({a['id']})" for a in ADVISORIES
             if a["package"] in floors and floors[a["package"]] < Version(a["fixed"])]
    assert not below
    assert {"keras", "pillow", "mlflow"} <= floors.keys()


def test_a_version_that_is_not_pep_440_counts_as_exposed():
    found = audit.listed_findings({"keras": "3.x-custom"}, [{"package": "keras", "id": "GHSA-test", "fixed": "3.14.0"}])
    assert found == ["keras 3.x-custom: GHSA-test (fixed in 3.14.0)"]
