"""P4 scaling: time per training image and peak RSS of the `seed` preset (2 epochs, the second timed) at
1k, 4k and 16k `shapes` images, each training in a process of its own (`run.py --p4-child SIZE`)."""

from __future__ import annotations

import sys
from pathlib import Path

from commands import last_json
from training import ours_images_per_second, shapes_snapshot

RUN = Path(__file__).resolve().with_name("run.py")


def p4_child(size: int, workdir: Path) -> dict:
    """One size's training in this process: ms per image and the process's peak RSS."""
    img_s = ours_images_per_second(shapes_snapshot(workdir, size), 2, workdir)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's
    peak_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmHWM:"))
    peak_mb = peak_kb / 1024
    return {"images": size, "ms_per_image": round(1000 / img_s, 4), "peak_rss_mb": round(peak_mb, 1)}


def p4(workdir: Path, sizes: list[int], rounds: int = 2) -> dict:
    """Each size in its own process (peak RSS is per process), in rounds of alternating order
    (small to large, then large to small), so drift in the machine's speed hits every size
    alike; each size keeps its fastest round and its largest peak RSS."""
    for size in sizes:
        shapes_snapshot(workdir, size)  # built here, so the child's peak RSS is training's alone
    runs: dict[int, list[dict]] = {size: [] for size in sizes}
    for round_ in range(rounds):
        for size in (sizes if round_ % 2 == 0 else sizes[::-1]):
            runs[size].append(last_json([sys.executable, str(RUN), "--p4-child", str(size), "--workdir", str(workdir)]))
    rows = [{"images": size, "ms_per_image": min(r["ms_per_image"] for r in runs[size]),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[size]),
             "rounds_ms_per_image": [r["ms_per_image"] for r in runs[size]]} for size in sizes]
    times = [r["ms_per_image"] for r in rows]
    rss = [r["peak_rss_mb"] for r in rows]
    return {"ratio": round(max(times) / min(times) - 1, 3), "goal": "time spread within 15%, RSS flat",
            "rss_spread": round(max(rss) / min(rss) - 1, 3), "rows": rows}
