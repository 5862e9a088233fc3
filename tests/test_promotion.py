"""Promotion is compare-and-set: a challenger is only ever promoted against the champion current at
that moment, retrains of one model take turns, and a promotion by hand is never undone unseen."""

import threading

import pytest
from typer.testing import CliRunner

import multitask.train
import tasks.gate
from cli import app
from flows.retrain import retrain_flow
from flows.train import train_flow
from multitask import registry

from helpers import no_retry_waits, tiny_config

NO_FLOORS = ("gate.min_accuracy=0", "gate.min_mean_iou=0")


def _tags(name: str, version: str) -> dict[str, str]:
    return registry.show(f"{name}/{version}")["tags"]


def test_a_promotion_by_hand_during_a_retrain_is_judged_against_not_undone(prefect_server, workspace, monkeypatch):
    name = 'registry.model_name="by-hand"'
    assert retrain_flow(config=tiny_config(*NO_FLOORS, name, "train.learning_rate=1e-9"))["champion"] == "1"
    assert train_flow(config=tiny_config(*NO_FLOORS, name, "train.seed=1"))["version"] == "2"  # a challenger
    real_train = multitask.train.train

    def train_while_a_person_rolls_back(*args, **kwargs):
        promoted = CliRunner().invoke(app, ["models", "promote", "by-hand/2", "--reason", "rollback"])
        assert promoted.exit_code == 0, promoted.output
        return real_train(*args, **kwargs)

    monkeypatch.setattr(multitask.train, "train", train_while_a_person_rolls_back)
    result = retrain_flow(config=tiny_config(*NO_FLOORS, name, "train.seed=2", "gate.tolerance=1.0"))
    assert result["challenger"] == "3"
    tags = _tags("by-hand", "3")
    assert tags["gate.champion_version"] == "2", "judged against the champion read before training"
    assert "evaluate_registered[v2]" in result["steps"]  # the new champion was scored on the same split
    # against the champion read before training, on the same data
    assert tags["drift.verdict"] == "no drift" and "champion v1 was trained on" in tags["drift.reason"], tags
    assert "measure_drift" not in result["steps"], "the same data was measured against itself"
    if result["decision"] == "promoted":
        assert tags["champion.previous"] == "2" and registry.champion("by-hand").version == "3"
    else:
        assert registry.champion("by-hand").version == "2", "the rollback was undone"


def test_overlapping_retrains_take_turns_and_the_second_is_judged_against_the_first(prefect_server, workspace):
    """Both start with no champion: before, both were judged "no champion yet", both promoted, and
    the last to finish won."""
    name = 'registry.model_name="overlap"'
    results: dict[int, dict] = {}

    def retrain(seed: int) -> None:
        results[seed] = retrain_flow(config=tiny_config(*NO_FLOORS, name, f"train.seed={seed}"))

    threads = [threading.Thread(target=retrain, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2, "a retrain failed (see its log)"
    first, second = sorted(results.values(), key=lambda r: int(r["challenger"]))
    assert first["decision"] == "promoted" and "no champion yet" in first["reason"]
    assert _tags("overlap", second["challenger"])["gate.champion_version"] == first["challenger"]
    assert second["metrics"].keys() == {"challenger", "champion"}
    expected = second["challenger"] if second["decision"] == "promoted" else first["challenger"]
    assert registry.champion("overlap").version == expected


def test_a_gate_retried_after_its_promotion_keeps_the_promotion(prefect_server, workspace, monkeypatch):
    """The promotion went through, then the step failed on a transient error (its artifact): the
    retry finds its own promotion, and neither calls it "moved" nor records anything twice."""
    name = 'registry.model_name="retried"'
    failed: list[str] = []
    real_artifact = tasks.gate.create_table_artifact

    def fails_once(**kwargs):
        if not failed:
            failed.append("gate-comparison")
            raise ConnectionError("the API went away after the promotion")
        return real_artifact(**kwargs)

    monkeypatch.setattr(tasks.gate, "create_table_artifact", fails_once)
    no_retry_waits(monkeypatch, tasks.gate.apply_gate)
    result = retrain_flow(config=tiny_config(*NO_FLOORS, name))
    assert failed and result["decision"] == "promoted" and result["champion"] == "1"
    tags = _tags("retried", "1")
    assert tags["gate.decision"] == "promoted" and registry.champion("retried").version == "1"


@pytest.mark.parametrize("kind", ["promote", "retrain"])
def test_without_a_server_the_lock_is_a_file_the_kernel_releases(workspace, monkeypatch, kind):
    """No PREFECT_API_URL: the lock is a workspace file held with flock, so a second holder waits."""
    from tasks import exclusive

    monkeypatch.setattr(exclusive, "server_url", lambda: None)
    inside = threading.Event()
    order: list[str] = []

    def second() -> None:
        inside.wait()
        with exclusive.one_at_a_time(kind, "m"):
            order.append("second")

    waiter = threading.Thread(target=second)
    waiter.start()
    with exclusive.one_at_a_time(kind, "m"):
        inside.set()
        waiter.join(timeout=0.5)
        assert waiter.is_alive(), "the second holder did not wait"
        order.append("first")
    waiter.join(timeout=5)
    assert order == ["first", "second"]
    assert (workspace / "locks" / f"multitask-{kind}-m.lock").exists()


def test_a_workspace_lock_beside_a_shared_registry_says_it_reaches_no_one_else(workspace, monkeypatch, caplog):
    from tasks import exclusive

    monkeypatch.setattr(exclusive, "server_url", lambda: None)
    with exclusive.one_at_a_time("promote", "m"):
        pass
    assert "shared" not in caplog.text  # the workspace's own registry: the file reaches everyone
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    with exclusive.one_at_a_time("promote", "m"):
        pass
    assert "the registry (http://127.0.0.1:5000) is shared: set PREFECT_API_URL" in caplog.text
