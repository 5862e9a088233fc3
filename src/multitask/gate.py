"""The promotion gate: does a challenger replace the champion? One pure function.

Per head (TFX calls this a "blessing"): the label head is judged by accuracy, the box head
by mean IoU. The challenger must meet both absolute floors; with a champion, it may lose at
most `tolerance` on either head and must beat the champion on at least one.
"""

from __future__ import annotations

from pydantic import BaseModel

from multitask.config import GateConfig

HEADS = {"label": "accuracy", "box": "mean_iou"}


class Decision(BaseModel):
    promote: bool
    reason: str
    challenger: dict[str, float]
    champion: dict[str, float] | None
    deltas: dict[str, float]


def decide(challenger: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig) -> Decision:
    """Compare test metrics (`accuracy`, `mean_iou`) of a challenger and the current champion."""
    scores = {head: challenger[metric] for head, metric in HEADS.items()}
    floors = {"label": cfg.min_accuracy, "box": cfg.min_mean_iou}
    below = [f"{head} {HEADS[head]} {scores[head]:.4f} < floor {floors[head]}"
             for head in HEADS if scores[head] < floors[head]]

    def result(promote: bool, reason: str, deltas: dict[str, float]) -> Decision:
        champ = {head: champion[metric] for head, metric in HEADS.items()} if champion else None
        return Decision(promote=promote, reason=reason, challenger=scores, champion=champ, deltas=deltas)

    if below:
        return result(False, "below floor: " + "; ".join(below), {})
    if champion is None:
        return result(True, "no champion yet and the floors are met", {})
    deltas = {head: round(scores[head] - champion[metric], 6) for head, metric in HEADS.items()}
    worse = [f"{head} {HEADS[head]} {deltas[head]:+.4f} (tolerance {cfg.tolerance})"
             for head in HEADS if deltas[head] < -cfg.tolerance]
    if worse:
        return result(False, "loses to the champion on " + "; ".join(worse), deltas)
    better = [f"{head} {HEADS[head]} {deltas[head]:+.4f}" for head in HEADS if deltas[head] > 0]
    if not better:
        return result(False, "does not beat the champion on any head", deltas)
    return result(True, "beats the champion on " + "; ".join(better), deltas)
