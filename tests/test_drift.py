"""Drift: a resample of the training distribution is no drift; another style of image is, both ways."""

import pytest
from typer.testing import CliRunner

from flows.drift import drift_flow
from flows.train import train_flow
from multitask import registry
from multitask.datasets.export import write_folder

from helpers import TINY, tiny_config


@pytest.fixture(scope="module")
def models(prefect_server, module_workspace, tmp_path_factory):
    """A tiny model of `shapes` and one of the cluttered style (a folder), and that folder's spec."""
    cluttered = write_folder(tmp_path_factory.mktemp("cluttered"), 60, style="cluttered")
    first = train_flow(config=tiny_config())
    second = train_flow(config=tiny_config(f'data.dataset="folder:{cluttered}"'))
    return f"{first['model']}/{first['version']}", f"{second['model']}/{second['version']}", f"folder:{cluttered}"


def test_a_resample_of_the_training_distribution_has_not_drifted(models):
    shapes_model, _, _ = models
    found = drift_flow(against=shapes_model, config=tiny_config("data.seed=1"))  # new images, same generator
    assert not found["drift"] and found["drifted"] == [], found["features"]
    assert {row["feature"] for row in found["features"]} >= {"classes", "brightness", "box_area", "model_1"}


@pytest.mark.parametrize("direction", ["cluttered against shapes", "shapes against cluttered"])
def test_another_style_has_drifted_and_names_the_features_that_moved(models, direction):
    from cli import app

    shapes_model, cluttered_model, cluttered = models
    spec, against = (cluttered, shapes_model) if direction.startswith("cluttered") else ("shapes", cluttered_model)
    result = CliRunner().invoke(app, ["data", "drift", spec, "--against", against,
                                      *(arg for item in TINY for arg in ("--set", item))])
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].endswith(": drift")
    moved = {line.split(":")[0].strip() for line in lines[1:]}
    assert {"height", "width", "contrast"} <= moved, result.output  # their images differ in size and contrast
    c = registry.client()
    runs = c.search_runs([c.get_experiment_by_name(against.split("/")[0]).experiment_id],
                         filter_string="tags.`multitask.drift` = 'true'")
    assert runs and {a.path for a in c.list_artifacts(runs[0].info.run_id)} == {"drift.json", "drift.png"}
