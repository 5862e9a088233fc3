"""Does multi-task training help? The comparison's variants and its report.

A comparison trains, from the same initial weights, on the same data and with the same budget,
a label-only model (box and where loss weights 0), a box-only model (label loss weight 0) and the
multi-task model under each task weighting, once per seed. Single-task models keep both heads,
so every variant has the same backbone and the same compute; only the loss differs. The report
gives each head's mean +- standard deviation over seeds, and each multi-task variant's gap to
the single-task baseline of that head, in points (1 point = 0.01).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from multitask import atomic
from multitask.config import ModelConfig, RunConfig, TrainConfig
from multitask.errors import ConfigError
from multitask.records import ComparisonReport, EvalReport, TrainedModelRef, hash_files

# Train settings that make each variant; everything else comes from the run's config.
VARIANTS: dict[str, dict[str, object]] = {
    # The where and edge losses supervise the box head's maps with the true box: box tasks, off here too.
    "label-only": {"weighting": "fixed", "box_loss_weight": 0.0, "where_loss_weight": 0.0,
                   "edge_loss_weight": 0.0},
    "box-only": {"weighting": "fixed", "label_loss_weight": 0.0},
    "fixed": {"weighting": "fixed"},
    "uncertainty": {"weighting": "uncertainty"},
    "dwa": {"weighting": "dwa"},
}
# Test metric -> the single-task variant that trains its head alone.
BASELINES = {"accuracy": "label-only", "mean_iou": "box-only", "iou50": "box-only"}
METRIC_TITLES = {"accuracy": "accuracy", "mean_iou": "mean IoU", "iou50": "IoU>=0.5"}
MAX_LOSS_POINTS = 1.0  # a multi-task head may trail its single-task baseline by this much


class RunResult(BaseModel):
    """One trained and evaluated variant."""

    model_config = ConfigDict(frozen=True)

    variant: str
    seed: int
    accuracy: float
    mean_iou: float
    iou50: float
    train_seconds: float
    best_epoch: int


def check_variants(variants: list[str]) -> list[str]:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown comparison variants {unknown or variants} (known: {', '.join(VARIANTS)})")
    return [v for v in VARIANTS if v in variants]  # report order, no duplicates


def model_config(config: RunConfig, seed: int) -> ModelConfig:
    """The initial model of seed i, shared by every variant: the initial-weights seed offset by i."""
    return config.model.model_copy(update={"seed": config.model.seed + seed})


def train_config(config: RunConfig, variant: str, seed: int) -> TrainConfig:
    """Training for one variant and seed: the variant's settings, the training seed offset by i."""
    return config.train.model_copy(update={**VARIANTS[variant], "seed": config.train.seed + seed})


def run_result(variant: str, seed: int, trained: TrainedModelRef, report: EvalReport) -> RunResult:
    return RunResult(variant=variant, seed=seed, train_seconds=trained.train_seconds,
                     best_epoch=trained.best_epoch, **{m: report.metrics[m] for m in BASELINES})


def _trains(variant: str, metric: str) -> bool:
    """False for the head a single-task variant leaves untrained."""
    return variant not in BASELINES.values() or BASELINES[metric] == variant


def summarise(results: list[RunResult]) -> list[dict[str, object]]:
    """One row per variant: mean and std per metric, and the gap to the single-task baseline."""
    variants = [v for v in VARIANTS if any(r.variant == v for r in results)]
    by_variant = {v: [r for r in results if r.variant == v] for v in variants}
    means = {v: {m: statistics.fmean(getattr(r, m) for r in runs) for m in BASELINES}
             for v, runs in by_variant.items()}
    rows = []
    for variant, runs in by_variant.items():
        row: dict[str, object] = {"variant": variant, "runs": len(runs)}
        for metric, baseline in BASELINES.items():
            values = [getattr(r, metric) for r in runs]
            trained = _trains(variant, metric)
            row[metric] = round(means[variant][metric], 4) if trained else None
            row[f"{metric}_std"] = round(statistics.stdev(values), 4) if trained and len(values) > 1 else None
            gap = None
            if trained and variant != baseline and baseline in means:
                gap = round(100 * (means[variant][metric] - means[baseline][metric]), 2)
            row[f"{metric}_vs_single_points"] = gap
        row["train_seconds"] = round(statistics.fmean(r.train_seconds for r in runs), 1)
        rows.append(row)
    return rows


def _cell(row: dict[str, object], metric: str) -> str:
    if row[metric] is None:
        return "-"
    std = row[f"{metric}_std"]
    return f"{row[metric]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _gap(row: dict[str, object], metric: str) -> str:
    gap = row[f"{metric}_vs_single_points"]
    return "" if gap is None else f"{gap:+.2f}"


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """A line per multi-task variant: does any head trail its single-task baseline by over 1 point?"""
    lines = []
    for row in rows:
        gaps = {m: row[f"{m}_vs_single_points"] for m in ("accuracy", "mean_iou")}
        if row["variant"] in BASELINES.values() or None in gaps.values():
            continue
        worst = min(gaps.values())
        ok = "no head" if worst >= -MAX_LOSS_POINTS else "a head"
        lines.append(f"- `{row['variant']}`: accuracy {gaps['accuracy']:+.2f} points, mean IoU "
                     f"{gaps['mean_iou']:+.2f} points vs single-task; {ok} worse by more than "
                     f"{MAX_LOSS_POINTS:g} point")
    return lines


def markdown(rows: list[dict[str, object]], title: str) -> str:
    header = ["variant", "runs", "accuracy", "Δ label-only (pts)", "mean IoU", "Δ box-only (pts)",
              "IoU>=0.5", "training s"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"`{row['variant']}`", str(row["runs"]), _cell(row, "accuracy"), _gap(row, "accuracy"),
                 _cell(row, "mean_iou"), _gap(row, "mean_iou"), _cell(row, "iou50"), f"{row['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Mean ± standard deviation over seeds on the test split; Δ is the gap to the "
            "single-task model of that head, in points (0.01).")
    lines += ["", note, ""]
    return "\n".join(lines + verdict(rows)) + "\n"


def plot(results: list[RunResult], path: Path, title: str) -> Path:
    """Per head, one bar per variant (mean over seeds) with each seed's result as a dot."""
    from matplotlib.figure import Figure  # here, so that the CLI can read VARIANTS quickly

    fig = Figure(figsize=(10, 3.8))
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "mean_iou")):
        variants = [v for v in VARIANTS if _trains(v, metric) and any(r.variant == v for r in results)]
        for x, variant in enumerate(variants):
            values = [getattr(r, metric) for r in results if r.variant == variant]
            ax.bar(x, statistics.fmean(values), color="tab:grey" if variant in BASELINES.values() else "tab:blue")
            ax.plot([x] * len(values), values, "o", color="black", markersize=3)
        ax.set_xticks(range(len(variants)), variants, rotation=20)
        low = min(getattr(r, metric) for r in results if _trains(r.variant, metric))
        ax.set_ylim(max(0.0, low - 0.05), 1.0)
        ax.set_title(f"test {METRIC_TITLES[metric]}")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return atomic.write_png(path, fig)


def write_report(results: list[RunResult], out_dir: Path, title: str) -> ComparisonReport:
    """`comparison.json` (rows and runs), `comparison.md` and `comparison.png` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarise(results)
    document = {"title": title, "rows": rows, "runs": [r.model_dump() for r in results]}
    files = [atomic.write_json(out_dir / "comparison.json", document),
             atomic.write_bytes(out_dir / "comparison.md", markdown(rows, title).encode()),
             plot(results, out_dir / "comparison.png", title)]
    return ComparisonReport(rows=rows, json_path=str(files[0]), markdown_path=str(files[1]),
                            plot_path=str(files[2]), fingerprint=hash_files(files))
