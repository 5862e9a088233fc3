"""retrain_flow: retrain on current data, and promote the challenger only if the gate passes."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from flows.train import SUMMARY_METRICS
from multitask import workspace
from multitask.config import RunConfig
from tasks.gate import apply_gate, current_champion, evaluate_champion, find_unchanged
from tasks.register import register_model


@flow(name="retrain")
def retrain_flow(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Data (cached when unchanged) -> challenger -> champion and challenger on one test split -> gate."""
    workspace.ensure()
    steps = Steps()
    name = config.registry.model_name
    dataset, snapshot = steps.data(config)
    unchanged = steps.run(find_unchanged, cached=False, dataset=dataset, config=config)
    if unchanged is not None:
        steps.logger.info("nothing to retrain: version %s was made from this data, config and code",
                          unchanged.version)
        return {"decision": "nothing to retrain", "model": name, "challenger": unchanged.version,
                "champion": None, "reason": f"version {unchanged.version} has the same data, config and code",
                "metrics": {}, "steps": steps.states}
    champion = steps.run(current_champion, cached=False, model_name=name)
    trained, report = steps.train_and_evaluate(config, dataset, snapshot)
    challenger = steps.run(register_model, trained=trained, report=report, dataset=dataset, config=config,
                           first_is_champion=False)
    champion_report = None
    if champion is not None:
        champion_report = steps.run(evaluate_champion, champion=champion, snapshot=snapshot,
                                    evaluate_config=config.evaluate)
    decision = steps.run(apply_gate, cached=False, challenger=challenger, challenger_report=report,
                         champion=champion, champion_report=champion_report, gate=config.gate)
    metrics = {"challenger": {k: report.metrics[k] for k in SUMMARY_METRICS}}
    if champion_report is not None:
        metrics["champion"] = {k: champion_report.metrics[k] for k in SUMMARY_METRICS}
    return {"decision": "promoted" if decision.promote else "kept", "model": name,
            "challenger": challenger.version,
            "champion": challenger.version if decision.promote else (champion.version if champion else None),
            "reason": decision.reason, "metrics": metrics, "steps": steps.states}
