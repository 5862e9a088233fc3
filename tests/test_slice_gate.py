"""The gate sees slices: a challenger trained with one class starved wins on average and is kept out."""

from flows.retrain import retrain_flow
from flows.train import train_flow
from multitask import registry
from multitask.config import GateConfig
from multitask.gate import decide

from helpers import tiny_config, write_rectangles

RARE = "orange"  # a tenth of the test split, and the class the challenger is starved of
COMMON = ("red", "yellow", "green")
NAME = 'registry.model_name="sliced"'
NO_FLOORS = ("gate.min_accuracy=0", "gate.min_mean_iou=0")


def _counts(rare: int, common: int) -> dict[str, dict[str, int]]:
    """`rare` training images of `RARE`, `common` of each other class; the same validation and test splits."""
    return {"train": {RARE: rare, **dict.fromkeys(COMMON, common)}, "validation": dict.fromkeys((RARE, *COMMON), 6),
            "test": {RARE: 12, **dict.fromkeys(COMMON, 30)}}


def test_a_challenger_that_wins_on_average_by_starving_a_class_is_kept_out(prefect_server, workspace, tmp_path):
    """The champion saw the rare class often and the others rarely; the challenger the reverse: one
    training image of the rare class. Far better on average, it fails the rare class's slice."""
    four_epochs = (*NO_FLOORS, NAME, "train.epochs=4")
    first = train_flow(config=tiny_config(*four_epochs, write_rectangles(tmp_path / "champion", _counts(60, 4))))
    assert first["aliases"] == ["challenger", "champion"]
    starved = write_rectangles(tmp_path / "challenger", _counts(1, 60))
    result = retrain_flow(config=tiny_config(*four_epochs, starved, "gate.slice_tolerance=0.05",
                                             "gate.min_slice_count=10"))
    challenger, champion = result["metrics"]["challenger"], result["metrics"]["champion"]
    assert decide(challenger, champion, GateConfig(min_accuracy=0, min_mean_iou=0)).promote, (challenger, champion)
    assert result["decision"] == "kept" and result["reason"].startswith(f"slice {RARE}: accuracy "), result["reason"]
    assert registry.champion("sliced").version == first["version"]
    tags = registry.show(f"sliced/{result['challenger']}")["tags"]
    assert tags["gate.reason"] == result["reason"]
    # its data drifted from the champion's: the class shares moved
    assert tags["drift.verdict"] == "drift" and "classes" in tags["drift.features"], tags
    card = registry.card(f"sliced/{result['challenger']}")
    assert f"**kept out** against champion v{first['version']}: slice {RARE}: accuracy" in card
