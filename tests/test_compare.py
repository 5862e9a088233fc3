"""compare_flow on a tiny dataset: every variant and seed trained as mapped tasks, one report."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from flows.compare import run_compare
from multitask import compare
from multitask.compare import RunResult, summarise
from multitask.errors import ConfigError

from helpers import TINY, tiny_config

# Both baselines and one learned weighting, on the small `seed` model, keep the suite fast;
# `summarise` is tested on all five variants.
VARIANTS = ["uncertainty", "box-only", "label-only"]


def _config():
    return tiny_config(preset="seed")


@pytest.fixture(scope="module")
def comparison(prefect_server, module_workspace):
    return run_compare(_config(), seeds=2, variants=VARIANTS, concurrency=2)


def test_every_variant_and_seed_is_trained_and_reported(comparison):
    assert [row["variant"] for row in comparison["rows"]] == ["label-only", "box-only", "uncertainty"]
    assert all(row["runs"] == 2 for row in comparison["rows"])
    mapped = [k for k in comparison["steps"] if k.startswith("train_model[")]
    assert len(mapped) == 6 and {comparison["steps"][k] for k in mapped} == {"Completed"}
    # one initial model per seed, shared by all variants of that seed
    assert [k for k in comparison["steps"] if k.startswith("build_model")] == ["build_model[seed0]",
                                                                             "build_model[seed1]"]
    assert {comparison["steps"]["build_model[seed0]"], comparison["steps"]["build_model[seed1]"]} == {"Completed"}
    rows = {row["variant"]: row for row in comparison["rows"]}
    assert rows["label-only"]["mean_iou"] is None and rows["box-only"]["accuracy"] is None
    learned = rows["uncertainty"]
    expected_gap = 100 * (learned["accuracy"] - rows["label-only"]["accuracy"])
    assert learned["accuracy_vs_single_points"] == pytest.approx(expected_gap, abs=0.02)

    report = Path(comparison["report"]).read_text()
    assert "| `uncertainty` |" in report and "points vs single-task" in report
    assert Path(comparison["plot"]).read_bytes().startswith(b"\x89PNG")
    document = json.loads(Path(comparison["json"]).read_text())
    assert len(document["runs"]) == 6


def test_table_artifact_is_published(comparison):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    keys = {a.key for a in artifact}
    assert "multitask-comparison" in keys


def test_a_second_comparison_is_all_cached_and_seed_runs_differ(comparison):
    again = run_compare(_config(), seeds=2, variants=VARIANTS, concurrency=1)
    assert {state for key, state in again["steps"].items() if key.startswith("train_model[")} == {"Cached"}
    assert again["rows"] == comparison["rows"]
    runs = json.loads(Path(comparison["json"]).read_text())["runs"]
    seeds = [r for r in runs if r["variant"] == "uncertainty"]
    assert seeds[0]["accuracy"] != seeds[1]["accuracy"] or seeds[0]["mean_iou"] != seeds[1]["mean_iou"]


def test_cli_compare_prints_the_table_and_copies_the_report(comparison, tmp_path):
    args = ["compare", "--preset", "seed", *(arg for s in TINY for arg in ("--set", s)), "--seeds", "2",
            "--variants", "uncertainty,label-only", "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["variant"] for row in summary["rows"]] == ["label-only", "uncertainty"]
    assert all(state == "Cached" for key, state in summary["steps"].items() if key.startswith("train_model["))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.json", "comparison.md", "comparison.png"]


def test_unknown_variant_is_refused_in_one_line():
    result = CliRunner().invoke(app, ["compare", "--variants", "fixed,both"])
    assert result.exit_code == 2 and "unknown comparison variants ['both']" in result.output


def test_summary_gaps_and_std():
    runs = [RunResult(variant=v, seed=s, accuracy=a, mean_iou=m, iou50=m, train_seconds=1.0, best_epoch=1)
            for v, s, a, m in [("label-only", 0, 0.90, 0.1), ("label-only", 1, 0.92, 0.2),
                               ("box-only", 0, 0.1, 0.80), ("box-only", 1, 0.1, 0.82),
                               ("fixed", 0, 0.95, 0.78), ("fixed", 1, 0.97, 0.78)]]
    rows = {row["variant"]: row for row in summarise(runs)}
    assert rows["fixed"]["accuracy_vs_single_points"] == pytest.approx(5.0)
    assert rows["fixed"]["mean_iou_vs_single_points"] == pytest.approx(-3.0)
    assert rows["label-only"]["accuracy_std"] == pytest.approx(0.0141, abs=1e-4)
    lines = compare.verdict(list(rows.values()))
    expected = ("- `fixed`: accuracy +5.00 points, mean IoU -3.00 points vs single-task; "
                "a head worse by more than 1 point")
    assert lines == [expected]


def test_variant_configs_set_weights_and_seeds():
    base = tiny_config()
    box_only = compare.train_config(base, "box-only", 2)
    assert box_only.label_loss_weight == 0 and box_only.box_loss_weight == base.train.box_loss_weight
    assert box_only.where_loss_weight == base.train.where_loss_weight > 0  # the where loss is box supervision
    label_only = compare.train_config(base, "label-only", 0)
    assert label_only.box_loss_weight == 0 and label_only.where_loss_weight == label_only.edge_loss_weight == 0
    assert compare.model_config(base, 2).seed == base.model.seed + 2 and box_only.seed == base.train.seed + 2
    assert compare.train_config(base, "dwa", 0).weighting == "dwa"
    with pytest.raises(ConfigError):
        compare.check_variants(["fixed", "nope"])
