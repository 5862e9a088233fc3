"""Parse dataset spec strings without importing TensorFlow (the CLI checks them up front)."""

from __future__ import annotations

from multitask.errors import DataError

SUPPORTED = ("shapes",)


def check(spec: str) -> str:
    """Return the normalised spec, or raise a `DataError` that says what is accepted."""
    spec = spec.strip()
    if spec in SUPPORTED:
        return spec
    kind = spec.split(":", 1)[0]
    if kind in ("tfds", "folder") and ":" in spec:
        raise DataError(f"dataset spec {spec!r}: `{kind}:` datasets are not supported yet; use `shapes`")
    raise DataError(f"unknown dataset spec {spec!r}: expected `shapes`, `tfds:NAME` or `folder:PATH`")
