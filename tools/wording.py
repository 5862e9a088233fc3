"""Tracked text speaks of the project only (`make lint`): no numbered step or ticket of the
process that built it, nor who planned it (`WORDS`). A reader of the repository knows none of
them; history that matters is in CHANGELOG.md, by date.

Exit status 1, with one `path:line: text` per finding, when a tracked text file has one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces, so that this file passes its own check.
WORDS = {"numbered": ("st" + "op", "is" + "sue"), "alone": ("plan" + "ner",)}
PATTERN = re.compile(rf"\b({'|'.join(WORDS['numbered'])})s?\s+#?\d+|\b({'|'.join(WORDS['alone'])})s?\b",
                     re.IGNORECASE)


def tracked_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [root / name for name in listed.decode().split("\0") if name]


def findings(path: Path) -> list[str]:
    """`path:line: text` for each line of a text file that matches; nothing for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return []
    text = data.decode("utf-8", errors="replace")
    numbered = enumerate(text.splitlines(), 1)
    name = path.relative_to(ROOT)
    return [f"{name}:{number}: {line.strip()[:160]}" for number, line in numbered if PATTERN.search(line)]


def main() -> int:
    found = [line for path in tracked_files(ROOT) if path.is_file()
             for line in findings(path)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} lines speak of how the project was made, not of the project: say it as a fact "
              "of the product, or put dated history in CHANGELOG.md", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
