"""What the stack tells whoever runs it: stdout carries only the `export` lines, so every other
line goes to stderr, and a failure is one line."""

from __future__ import annotations

import sys


class StackError(Exception):
    """A one-line reason the stack did not come up."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
