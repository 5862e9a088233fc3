import pytest

from multitask.config import GateConfig
from multitask.gate import decide

GATE = GateConfig(min_accuracy=0.8, min_mean_iou=0.6, tolerance=0.01)
CHAMPION = {"accuracy": 0.90, "mean_iou": 0.75}


def test_better_challenger_is_promoted():
    decision = decide({"accuracy": 0.93, "mean_iou": 0.745}, CHAMPION, GATE)  # box within tolerance
    assert decision.promote and "label accuracy +0.0300" in decision.reason
    assert decision.deltas == {"label": pytest.approx(0.03), "box": pytest.approx(-0.005)}


def test_worse_on_one_head_beyond_tolerance_is_kept_out():
    decision = decide({"accuracy": 0.99, "mean_iou": 0.70}, CHAMPION, GATE)
    assert not decision.promote and decision.reason.startswith("loses to the champion on box mean_iou -0.0500")


def test_equal_on_both_heads_is_kept_out():
    decision = decide(dict(CHAMPION), CHAMPION, GATE)
    assert not decision.promote and decision.reason == "does not beat the champion on any head"


def test_first_model_is_promoted_when_floors_are_met():
    decision = decide({"accuracy": 0.81, "mean_iou": 0.61}, None, GATE)
    assert decision.promote and decision.champion is None


@pytest.mark.parametrize(("metrics", "head"), [
    ({"accuracy": 0.5, "mean_iou": 0.9}, "label accuracy 0.5000 < floor 0.8"),
    ({"accuracy": 0.95, "mean_iou": 0.2}, "box mean_iou 0.2000 < floor 0.6"),
])
def test_floors_not_met_keep_it_out_even_against_a_weak_champion(metrics, head):
    decision = decide(metrics, {"accuracy": 0.1, "mean_iou": 0.1}, GATE)
    assert not decision.promote and head in decision.reason


def _slices(star_iou: float, star_count: int = 40) -> dict:
    row = {"count": star_count, "accuracy": 0.9, "mean_iou": star_iou}
    return {"class": {"star": row, "square": {"count": 40, "accuracy": 0.9, "mean_iou": 0.8}},
            "size": {"small": {"count": 0, "accuracy": None, "mean_iou": None}}}


SLICED = GATE.model_copy(update={"slice_tolerance": 0.05, "min_slice_count": 30})
BETTER = {"accuracy": 0.93, "mean_iou": 0.76}


def test_a_challenger_better_on_average_but_losing_a_slice_is_kept_out():
    decision = decide(BETTER, CHAMPION, SLICED, _slices(0.62), _slices(0.79))
    assert not decision.promote and decision.reason == "slice star: mean_iou 0.6200 < champion 0.7900 - 0.05"


@pytest.mark.parametrize(("gate", "count"), [(GATE, 40), (SLICED, 29)])
def test_slices_are_not_judged_when_off_or_too_small(gate, count):
    decision = decide(BETTER, CHAMPION, gate, _slices(0.62, count), _slices(0.79, count))
    assert decision.promote, decision.reason


def test_a_slice_loss_within_the_slice_tolerance_passes():
    assert decide(BETTER, CHAMPION, SLICED, _slices(0.75), _slices(0.79)).promote
