"""One object as an annotation file states it, and the number check both annotation readers share."""

from __future__ import annotations

import math
from dataclasses import dataclass

from multitask.errors import DataError


@dataclass(frozen=True)
class AnnotatedObject:
    label: str
    pixels: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    where: str  # "row 7" or "annotation id 12", for error messages


def number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {column} must be a finite number, got {text!r}")
    return value
