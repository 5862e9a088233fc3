"""retrain_flow: retrain on current data, and promote the challenger only if the gate passes."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import workspace
from multitask.config import RunConfig
from multitask.gate import classes_differ
from multitask.records import SUMMARY_METRICS
from tasks.gate import apply_gate, current_champion, find_unchanged
from tasks.register import register_model
from tasks.registered import evaluate_registered, model_preprocessing


def _nothing_to_retrain(steps: Steps, name: str, version: str, reason: str) -> dict[str, Any]:
    steps.logger.info("nothing to retrain: %s", reason)
    return {"decision": "nothing to retrain", "model": name, "challenger": version, "champion": None,
            "reason": reason, "metrics": {}, "steps": steps.states}


@flow(name="retrain")
def retrain_flow(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Data (cached when unchanged) -> challenger -> champion and challenger on one test split -> gate.

    The gate runs only on a new model: a version with the same lineage (data, model and train
    settings, code) stops the flow before training, and a challenger that turns out to be
    the champion itself is never judged against itself.
    """
    workspace.ensure()
    steps = Steps()
    name = config.model_name
    dataset, snapshot = steps.data(config)
    unchanged = steps.run(find_unchanged, cached=False, dataset=dataset, config=config)
    if unchanged is not None:
        version, reason = unchanged
        return _nothing_to_retrain(steps, name, version.version, reason)
    champion = steps.run(current_champion, cached=False, model_name=name)
    trained, report = steps.train_and_evaluate(config, dataset, snapshot)
    challenger = steps.run(register_model, trained=trained, report=report, dataset=dataset, config=config,
                           first_is_champion=False)
    if champion is not None and challenger.version == champion.version:
        return _nothing_to_retrain(steps, name, challenger.version,
                                   f"the trained model is version {champion.version}, the champion itself")
    difference, champion_report = None, None
    if champion is not None:
        champion_classes = steps.run(model_preprocessing, cached=False, version=champion).get("class_names", [])
        difference = classes_differ(champion_classes, dataset.class_names)
    if champion is not None and difference is None:  # the champion on the challenger's test split
        champion_report = steps.run(evaluate_registered, version=champion, snapshot=snapshot,
                                    evaluate_config=config.evaluate)
    decision = steps.run(apply_gate, cached=False, challenger=challenger, challenger_report=report,
                         champion=champion, champion_report=champion_report, gate=config.gate,
                         classes_differ=difference)
    metrics = {"challenger": {k: report.metrics[k] for k in SUMMARY_METRICS}}
    if champion_report is not None:
        metrics["champion"] = {k: champion_report.metrics[k] for k in SUMMARY_METRICS}
    return {"decision": "promoted" if decision.promote else "kept", "model": name,
            "challenger": challenger.version,
            "champion": challenger.version if decision.promote else (champion.version if champion else None),
            "reason": decision.reason, "metrics": metrics, "steps": steps.states}
