"""Pictures inside Prefect artifacts: a PNG as a `data:` URI in markdown, which the Prefect UI
renders in place (an image artifact would need a URL the browser can reach; a file path on the
machine that ran the flow is of no use to a person looking at the UI)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

MAX_SIDE = 900  # pixels: wider than the UI's artifact column


def inline_png(path: str | Path, alt: str, max_side: int = MAX_SIDE) -> str:
    """Markdown for the picture at `path`, scaled down to `max_side` and embedded. 256 colours:
    a 3x3 prediction grid is 118 KB instead of 320 KB, and plots look the same."""
    with Image.open(path) as image:
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.convert("RGB").quantize(256).save(buffer, format="PNG", optimize=True)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
