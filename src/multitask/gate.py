"""The promotion gate: does a challenger replace the champion? One pure function.

Per head (TFX calls this a "blessing"): the label head is judged by accuracy, the box head
by mean IoU. The challenger must meet both absolute floors; with a champion, it may lose at
most `tolerance` on either head and must beat the champion on at least one. With
`slice_tolerance` set, it may also lose at most that on any slice (a class, an object size) with
at least `min_slice_count` test images: winning on average by failing one class keeps it out.
Models trained on different class names are never compared: their accuracies do not measure the
same thing.
"""

from __future__ import annotations

from pydantic import BaseModel

from multitask.config import GateConfig
from multitask.records import HEAD_METRICS
from multitask.slices import SLICE_METRICS

HEADS = HEAD_METRICS


class Decision(BaseModel):
    promote: bool
    reason: str
    challenger: dict[str, float]
    champion: dict[str, float] | None
    deltas: dict[str, float]


def _classes(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{len(names)} classes ({shown})"


def classes_differ(model_classes: list[str], data_classes: list[str]) -> str | None:
    """None when the class names are the same (and in the same order), else one line saying how."""
    if list(model_classes) == list(data_classes):
        return None
    return f"trained on {_classes(model_classes)}; the data has {_classes(data_classes)}"


def _kept_out(challenger: dict[str, float], reason: str) -> Decision:
    """Kept out without a comparison of the two models."""
    return Decision(promote=False, champion=None, deltas={}, reason=reason,
                    challenger={head: challenger[metric] for head, metric in HEADS.items()})


def not_comparable(challenger: dict[str, float], champion_version: str, difference: str) -> Decision:
    """The decision when the champion was trained on other classes: kept out, nothing compared."""
    return _kept_out(challenger, f"not compared: champion v{champion_version} was {difference}; the gate "
                                 "compares only models of the same classes (promote by hand or use another "
                                 "registry.model_name)")


def champion_moved(challenger: dict[str, float], judged: str | None, current: str | None) -> Decision:
    """The decision when the champion kept moving while the challenger was being judged: kept out,
    never promoted against a champion that is no longer current."""
    return _kept_out(challenger, f"champion moved from {_name(judged)} to {_name(current)} during this run; "
                                 f"it was not judged against {_name(current)}")


def made_champion_meanwhile(challenger: dict[str, float], version: str) -> Decision:
    """The challenger became champion while it was being judged (promoted by hand): nothing to judge."""
    return _kept_out(challenger, f"v{version} was made champion during this run (by hand); the gate did not judge it")


def _name(version: str | None) -> str:
    return f"v{version}" if version else "no champion"


def slices_lost(challenger: dict[str, dict[str, dict]], champion: dict[str, dict[str, dict]],
                cfg: GateConfig) -> list[str]:
    """`slice star: mean_iou 0.6200 < champion 0.7900 - 0.05` for each slice and head the challenger
    loses by more than `cfg.slice_tolerance`, among slices both have `cfg.min_slice_count` images of."""
    if cfg.slice_tolerance is None:
        return []
    lost = []
    for kind, rows in challenger.items():
        for name, ours in rows.items():
            theirs = champion.get(kind, {}).get(name)
            if theirs is None or min(ours["count"], theirs["count"]) < cfg.min_slice_count:
                continue
            label = name if kind == "class" else f"{name} objects"
            lost += [f"slice {label}: {metric} {ours[metric]:.4f} < champion {theirs[metric]:.4f} - "
                     f"{cfg.slice_tolerance}" for metric in SLICE_METRICS.values()
                     if ours[metric] < theirs[metric] - cfg.slice_tolerance]
    return lost


def decide(challenger: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig,
           challenger_slices: dict | None = None, champion_slices: dict | None = None) -> Decision:
    """Compare test metrics (`accuracy`, `mean_iou`) of a challenger and the current champion, and
    their slices (`multitask.slices`) when `cfg.slice_tolerance` is set."""
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
    lost = slices_lost(challenger_slices or {}, champion_slices or {}, cfg)
    if lost:
        return result(False, "; ".join(lost), deltas)
    better = [f"{head} {HEADS[head]} {deltas[head]:+.4f}" for head in HEADS if deltas[head] > 0]
    if not better:
        return result(False, "does not beat the champion on any head", deltas)
    return result(True, "beats the champion on " + "; ".join(better), deltas)


def unchanged_reason(version: str, changed_sections: list[str]) -> str:
    """Why a retrain stops early: a registered version already has this lineage."""
    reason = f"version {version} was made from the same data, model and training settings and code"
    if not changed_sections:
        return reason
    names = ", ".join(f"[{name}]" for name in changed_sections)
    note = "; gate settings judge the next challenger" if "gate" in changed_sections else ""
    return f"{reason}; only the {names} settings differ, and they do not change the model{note}"
