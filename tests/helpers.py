"""What the tests share besides fixtures: tiny configs, registry and Prefect helpers, the team
stack's module. Test files import it (`from helpers import ...`); fixtures live in conftest.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from multitask import registry
from multitask.config import RunConfig
from multitask.config_loader import load_config

ROOT = Path(__file__).resolve().parents[1]
DATA_STEPS = ("prepare_dataset", "build_snapshot", "validate_dataset")  # the data flow's steps, in order

# Tens of 32x32 images, one epoch, and the starting point's 7-layer model: most flow tests are
# about orchestration, and the default model trains slower (4-5 s against 2-3 s per `TINY` training
# with eager steps, 11 s against 4-5 s compiled). tests/test_train_flow.py and the library's
# training tests use the default model.
TINY = [
    "data.train_size=40", "data.validation_size=10", "data.test_size=10", "data.image_size=32",
    "train.epochs=1", "train.batch_size=16", "evaluate.grid_size=2", 'model.preset="seed"',
]
DEFAULT_MODEL = 'model.preset="default"'



def versions(name: str = "multitask-shapes") -> list[str]:
    """The registered versions of `name` in the current workspace, oldest first."""
    return sorted((row["version"] for row in registry.list_models() if row["name"] == name), key=int)


def tiny_parameters(*sets: str) -> dict:
    """`TINY` and `sets` (`section.key=JSON`, as `--set` takes them) as a flow's `config` parameter,
    for deployment runs."""
    config: dict = {}
    for item in (*TINY, *sets):
        key, value = item.split("=", 1)
        section, field = key.split(".")
        config.setdefault(section, {})[field] = json.loads(value)
    return {"config": config}


def run_prefect(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A `prefect` command as a user would type it, from the repository root; must succeed.

    `PWD` too, as a shell sets it: prefect.yaml's pull step runs flows in `{{ $PWD }}`, and a child's
    `cwd` does not change the variable it inherits (pytest started from another folder deployed that one)."""
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env={**env, "PWD": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def stack_module():
    """deployments/stack/stack.py, a script rather than a package, loaded as a module."""
    spec = importlib.util.spec_from_file_location("stack", ROOT / "deployments" / "stack" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def no_retry_waits(monkeypatch, *steps) -> None:
    """`steps` (Prefect tasks) retry at once instead of after about 2, 4, 8 s: tests count attempts."""
    for step in steps:
        monkeypatch.setattr(step, "retry_delay_seconds", 0)


def tiny_config(*sets: str, preset: str = "default") -> RunConfig:
    """A config that trains in seconds (`TINY`); `sets` come after it, so they can override it."""
    return load_config(preset, sets=[*TINY, *sets])


def training_inputs(cfg: RunConfig, home: Path):
    """A snapshot of `cfg.data` and `cfg.model`'s initial model, saved under `home`, as the
    library's `train` takes them (`ModelRef`, `SnapshotRef`)."""
    # Imported here: they load TensorFlow, and conftest.py imports this module in xdist's
    # controller too, which never trains.
    from multitask.datasets import catalog
    from multitask.model import save_initial
    from multitask.pipeline import build_snapshot

    snapshot = build_snapshot(catalog.prepare(cfg.data), cfg.data, home / "snapshot")
    return save_initial(cfg.model, len(snapshot.class_names), snapshot.image_size, home / "initial.keras"), snapshot


COLOURS = {"red": (220, 40, 40), "orange": (235, 130, 40), "yellow": (230, 220, 40), "green": (40, 210, 40)}


def write_rectangles(root: Path, counts: dict[str, dict[str, int]], jitter: int = 30, size: tuple[int, int] = (48, 48),
                     seed: int = 0) -> str:
    """A folder dataset of filled rectangles on black whose colour is the class (`COLOURS`, each image's
    moved by up to `jitter` per channel): learnt in a few epochs. `counts[split][class]` images per
    split and class, `size` (width, height) each; returns the `data.dataset=` setting."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    width, height = size
    for split, per_class in counts.items():
        for name, count in per_class.items():
            for index in range(count):
                w, h = rng.integers(width // 5, width * 4 // 5), rng.integers(height // 5, height * 4 // 5)
                x, y = rng.integers(0, width - w), rng.integers(0, height - h)
                pixels = np.zeros((height, width, 3), np.uint8)
                colour = np.array(COLOURS[name]) + rng.integers(-jitter, jitter + 1, 3)
                pixels[y:y + h, x:x + w] = np.clip(colour, 0, 255)
                filename = f"images/{name}-{split}-{index}.png"
                Image.fromarray(pixels).save(root / filename)
                rows.append([filename, name, x, y, x + w, y + h, split])
    with open(root / "annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "label", "xmin", "ymin", "xmax", "ymax", "split"], *rows])
    return f'data.dataset="folder:{root}"'
