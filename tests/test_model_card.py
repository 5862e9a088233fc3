"""The model card renders every section, also for a version registered before some of its facts existed."""

from multitask.model_card import render

SECTIONS = ["# Model card: old v3", "## Intended use", "## Data", "## Training", "## Results on the test split",
            "## Calibration", "## Gate decision", "## Lineage", "## Known limits"]


def _facts(**changes) -> dict:
    facts = {"name": "old", "version": "3", "aliases": ["champion"], "created": "2026-11-01 10:00 UTC",
             "run_id": "abc", "tags": {"data_fingerprint": "d1", "code_fingerprint": "c1"}, "image_size": 64,
             "class_names": ["cat|dog", "bird"], "config": None, "evaluation": None, "history": None, "profile": None}
    return {**facts, **changes}


def test_a_version_with_none_of_the_recorded_files_still_has_every_section():
    card = render(_facts())
    assert all(section in card for section in SECTIONS), card
    assert "The training settings were not recorded" in card and "Not recorded with this version" in card
    assert "Not judged by the gate (yet)" in card and "`d1`" in card


def test_an_older_history_and_a_config_with_removed_settings_are_read():
    history = [{"epoch": 1, "train_seconds": 30.0}, {"epoch": 2, "train_seconds": 90.0}]  # the older plain list
    config = {"data": {"dataset": "folder:/data/pets", "image_size": 96}, "model": {"augment_mix": 0.5},
              "train": {"epochs": 7}}
    evaluation = {"accuracy": 0.9, "mean_iou": 0.8, "iou50": 0.95, "loss": 0.3, "calibration": {"ece": 0.12},
                  "slices": {"class": {"cat|dog": {"count": 40, "accuracy": 0.5, "accuracy_interval": [0.4, 0.6],
                                                   "mean_iou": 0.7, "mean_iou_interval": [0.6, 0.8]}}}}
    card = render(_facts(history=history, config=config, evaluation=evaluation,
                         tags={"gate.decision": "kept out", "gate.reason": "slice x", "gate.champion_version": "2"}))
    assert "Ran 2 epochs" in card and "in 2.0 training minutes" in card and "`folder:/data/pets`" in card
    assert "**kept out** against champion v2: slice x" in card
    assert "| class cat\\|dog | 40 |" in card  # a class name with a bar stays one table cell
    assert "class cat|dog: accuracy 0.500 below the floor 0.8" in card  # the default floors when not recorded
    assert "label scores are not calibrated (ECE 0.120)" in card
