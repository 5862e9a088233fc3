"""The `multitask` command line, above the flows: it parses arguments and calls flows."""

from cli.main import app, main

__all__ = ["app", "main"]
