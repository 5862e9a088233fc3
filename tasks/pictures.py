"""Pictures inside Prefect artifacts: a PNG as a `data:` URI in markdown, which the Prefect UI
renders in place (an image artifact would need a URL the browser can reach; a file path on the
machine that ran the flow is of no use to a person looking at the UI)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

MAX_SIDE = 900  # pixels: the UI's artifact column is narrower; keeps each picture well under 300 KB


def inline_png(path: str | Path, alt: str) -> str:
    """Markdown for the picture at `path`, scaled down to `MAX_SIDE` and embedded."""
    with Image.open(path) as image:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", optimize=True)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
