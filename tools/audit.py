"""Known vulnerabilities in the installed environment (`make lint`): pip-audit first, then the
advisories listed in tools/advisories.toml, which catch what pip-audit cannot see.

pip-audit asks PyPI (or OSV) about each installed version. Where that service cannot be reached
it reports every package "not found" and still passes, so its answer alone proves nothing; this
script says how many packages it really audited, and always checks the listed advisories too.
Exit status 1 when either finds an installed version with a known vulnerability.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ADVISORIES = Path(__file__).with_name("advisories.toml")
PIP_AUDIT_TIMEOUT_S = 600


def installed() -> dict[str, str]:
    """Installed distributions: canonical name -> version."""
    return {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def _below(version: str, fixed: str) -> bool:
    """Whether `version` comes before `fixed`; a version that is not PEP 440 counts as exposed."""
    try:
        return Version(version) < Version(fixed)
    except InvalidVersion:
        return True


def listed_findings(versions: dict[str, str], advisories: list[dict]) -> list[str]:
    """One line per listed advisory that an installed version is still exposed to."""
    found = []
    for advisory in advisories:
        version = versions.get(canonicalize_name(advisory["package"]))
        if version is not None and _below(version, advisory["fixed"]):
            found.append(f"{advisory['package']} {version}: {advisory['id']} (fixed in {advisory['fixed']})")
    return found


def pip_audit() -> tuple[list[str], int, int]:
    """(findings, packages audited, packages pip-audit could not audit) from pip-audit's JSON."""
    try:
        done = subprocess.run([sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off",
                               "--skip-editable"], capture_output=True, text=True, timeout=PIP_AUDIT_TIMEOUT_S)
        report = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        print(f"pip-audit gave no report ({type(e).__name__}); relying on {ADVISORIES.name}", file=sys.stderr)
        return [], 0, 0
    findings, skipped = [], 0
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped += 1
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            findings.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    return findings, len(report.get("dependencies", [])) - skipped, skipped


def main() -> int:
    advisories = tomllib.loads(ADVISORIES.read_text())["advisory"]
    versions = installed()
    audited_findings, audited, skipped = pip_audit()
    findings = sorted(set(audited_findings) | set(listed_findings(versions, advisories)))
    print(f"pip-audit: {audited} packages audited, {skipped} it could not look up; "
          f"{ADVISORIES.name}: {len(advisories)} advisories checked against {len(versions)} installed packages")
    for line in findings:
        print(f"vulnerable: {line}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
