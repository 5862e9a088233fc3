"""What the retrain flow judges: only a new model, only against a champion of the same classes.

Each case is a sequence a user ran into: a gate-only change judged the champion against
itself; a folder dataset's model became a version of the shapes model and crashed the gate.
"""

import csv
import json

import pytest
from typer.testing import CliRunner

from cli import app
from flows.retrain import retrain_flow
from multitask import registry
from multitask.datasets.export import write_folder

from helpers import TINY, tiny_config

SETS = (*TINY, "gate.min_accuracy=0", "gate.min_mean_iou=0")


@pytest.fixture(scope="module")
def champion(prefect_server, module_workspace):
    first = retrain_flow(config=tiny_config(*SETS[len(TINY):]))
    assert first["decision"] == "promoted" and first["model"] == "multitask-shapes"
    return first["challenger"]


def _tags(version: str, name: str = "multitask-shapes") -> dict:
    return registry.show(f"{name}/{version}")["tags"]


def _retrain_cli(*sets: str) -> dict:
    args = ["retrain", "--json", *(a for item in (*SETS, *sets) for a in ("--set", item))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("change", "section"), [("gate.tolerance=0.02", "[gate]"),
                                                 ("evaluate.grid_size=3", "[evaluate]")])
def test_a_gate_or_evaluate_change_is_nothing_to_retrain(champion, change, section):
    before = _tags(champion)
    result = _retrain_cli(change)
    assert result["decision"] == "nothing to retrain" and result["challenger"] == champion
    assert f"only the {section} settings differ" in result["reason"]
    assert "train_model" not in result["steps"] and "apply_gate" not in result["steps"]
    assert _tags(champion) == before  # no verdict recorded on the champion
    assert registry.champion("multitask-shapes").version == champion


def test_a_challenger_that_is_the_champion_is_never_judged(champion):
    """A champion registered before lineage tags existed: the flow trains (cached) and gets it back."""
    client = registry.client()
    lineage = _tags(champion)[registry.LINEAGE_TAG]
    client.delete_model_version_tag("multitask-shapes", champion, registry.LINEAGE_TAG)
    try:
        before = _tags(champion)
        result = retrain_flow(config=tiny_config(*SETS[len(TINY):]))
    finally:
        client.set_model_version_tag("multitask-shapes", champion, registry.LINEAGE_TAG, lineage)
    assert result["decision"] == "nothing to retrain"
    assert result["reason"] == f"the trained model is version {champion}, the champion itself"
    assert result["steps"]["train_model"] == "Cached" and "apply_gate" not in result["steps"]
    assert {k: v for k, v in _tags(champion).items() if k != registry.LINEAGE_TAG} == before


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """A user's folder dataset with classes a, b and c."""
    folder = write_folder(tmp_path_factory.mktemp("user") / "fruit", 40, "csv")
    with open(folder / "annotations.csv", newline="") as f:
        rows = list(csv.reader(f))
    for index, row in enumerate(rows[1:]):
        row[1] = "abc"[index % 3]
    with open(folder / "annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return folder


def test_each_dataset_gets_its_own_model_name(champion, three_classes):
    result = retrain_flow(config=tiny_config(*SETS[len(TINY):], f'data.dataset="folder:{three_classes}"'))
    assert result["model"] == "multitask-fruit" and result["decision"] == "promoted"
    assert "no champion yet" in result["reason"]
    assert registry.champion("multitask-shapes").version == champion


def test_the_gate_never_compares_models_of_other_classes(champion, three_classes):
    result = retrain_flow(config=tiny_config(*SETS[len(TINY):], f'data.dataset="folder:{three_classes}"',
                                             'registry.model_name="multitask-shapes"', "train.seed=3"))
    assert result["decision"] == "kept" and result["champion"] == champion
    assert result["reason"].startswith(f"not compared: champion v{champion} was trained on 10 classes (circle, ")
    assert "the data has 3 classes (a, b, c)" in result["reason"]
    assert "evaluate_registered" not in result["steps"] and "champion" not in result["metrics"]
    assert _tags(result["challenger"])["gate.decision"] == "kept out"
    assert registry.champion("multitask-shapes").version == champion


def test_evaluate_refuses_a_model_on_data_of_other_classes(champion, three_classes):
    result = CliRunner().invoke(app, ["evaluate", "--model", f"multitask-shapes/{champion}",
                                      "--dataset", f"folder:{three_classes}"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot evaluate multitask-shapes/{champion} on folder:")
    assert "the model was trained on 10 classes" in result.stderr
