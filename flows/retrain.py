"""retrain_flow: retrain on current data, and promote the challenger only if the gate passes."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import workspace
from multitask.config import RunConfig
from multitask.gate import Decision, classes_differ, made_champion_meanwhile
from multitask.records import SUMMARY_METRICS, DatasetRef, EvalReport, ModelVersion, SnapshotRef
from tasks.drift import drift_known, measure_drift, tag_drift
from tasks.exclusive import one_at_a_time
from tasks.gate import apply_gate, current_champion, find_unchanged
from tasks.register import register_model
from tasks.versions import evaluate_registered, model_preprocessing

# Judgements of one challenger when the champion keeps moving meanwhile; then it is kept out.
JUDGEMENTS = 3


def _nothing_to_retrain(steps: Steps, name: str, version: str, reason: str) -> dict[str, Any]:
    steps.logger.info("nothing to retrain: %s", reason)
    return {"decision": "nothing to retrain", "model": name, "challenger": version, "champion": None,
            "reason": reason, "metrics": {}, "steps": steps.states}


@flow(name="retrain")
def retrain_flow(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Data (cached when unchanged) -> challenger -> champion and challenger on one test split -> gate.

    Retrains of one registered model take turns (`tasks.exclusive`): a second one waits, then
    finds the version the first registered and stops, rather than train the same model beside it.
    The gate runs only on a new model: a version with the same lineage (data, model and train
    settings, code) stops the flow before training, and a challenger that turns out to be the
    champion itself is never judged against itself. A promotion is compare-and-set: when the
    champion moved while the challenger was trained or judged, it is judged again against the new one.
    """
    workspace.ensure()
    steps = Steps()
    name = config.model_name
    dataset, snapshot = steps.data(config)
    with one_at_a_time("retrain", name):
        unchanged = steps.run(find_unchanged, cached=False, dataset=dataset, config=config)
        if unchanged is not None:
            version, reason = unchanged
            return _nothing_to_retrain(steps, name, version.version, reason)
        champion = steps.run(current_champion, cached=False, model_name=name)
        trained, report = steps.train_and_evaluate(config, dataset, snapshot)
        challenger = steps.run(register_model, trained=trained, report=report, dataset=dataset, snapshot=snapshot,
                               config=config, first_is_champion=False)
        if champion is not None and challenger.version == champion.version:
            return _nothing_to_retrain(steps, name, challenger.version,
                                       f"the trained model is version {champion.version}, the champion itself")
        _tag_drift(steps, config, dataset, snapshot, challenger, champion)
        decision, champion, champion_report = _judge(steps, config, dataset, snapshot, challenger, report, champion)
    metrics = {"challenger": {k: report.metrics[k] for k in SUMMARY_METRICS}}
    if champion_report is not None:
        metrics["champion"] = {k: champion_report.metrics[k] for k in SUMMARY_METRICS}
    return {"decision": "promoted" if decision.promote else "kept", "model": name,
            "challenger": challenger.version,
            "champion": challenger.version if decision.promote else (champion.version if champion else None),
            "reason": decision.reason, "metrics": metrics, "steps": steps.states}


def _tag_drift(steps: Steps, config: RunConfig, dataset: DatasetRef, snapshot: SnapshotRef,
               challenger: ModelVersion, champion: ModelVersion | None) -> None:
    """Tag the challenger with whether its data drifted from the champion's (`drift.verdict`)."""
    known = ("not measured", "no champion to compare with") if champion is None else steps.run(
        drift_known, cached=False, version=champion, dataset=dataset, config=config)
    if known is not None:
        steps.run(tag_drift, cached=False, challenger=challenger, drift=None, verdict=known[0], reason=known[1])
        return
    try:
        drift = steps.run(measure_drift, version=champion, snapshot=snapshot, dataset=config.data.dataset)
    except Exception as exc:  # noqa: BLE001  (a description of the data: the retrain goes on without it)
        steps.logger.warning("drift against champion v%s not measured: %s", champion.version, exc)
        steps.run(tag_drift, cached=False, challenger=challenger, drift=None, reason=f"failed: {exc}")
        return
    steps.run(tag_drift, cached=False, challenger=challenger, drift=drift)


def _judge(steps: Steps, config: RunConfig, dataset: DatasetRef, snapshot: SnapshotRef, challenger: ModelVersion,
           report: EvalReport, champion: ModelVersion | None,
           ) -> tuple[Decision, ModelVersion | None, EvalReport | None]:
    """The gate against the champion, again against a new one while it moves; returns the
    decision, the champion it was made against and that champion's report."""
    for attempt in range(1, JUDGEMENTS + 1):
        if champion is not None and champion.version == challenger.version:  # promoted by hand meanwhile
            return made_champion_meanwhile(report.metrics, challenger.version), champion, None
        label = "" if attempt == 1 else f"v{champion.version if champion else '-'}"
        difference, champion_report = None, None
        if champion is not None:
            champion_classes = steps.run(model_preprocessing, cached=False, label=label,
                                         version=champion).get("class_names", [])
            difference = classes_differ(champion_classes, dataset.class_names)
        if champion is not None and difference is None:  # the champion on the challenger's test split
            champion_report = steps.run(evaluate_registered, label=label, version=champion, snapshot=snapshot,
                                        evaluate_config=config.evaluate)
        decision = steps.run(apply_gate, cached=False, label=label, challenger=challenger, challenger_report=report,
                             champion=champion, champion_report=champion_report, gate=config.gate,
                             classes_differ=difference, last_try=attempt == JUDGEMENTS)
        if decision is not None:
            return decision, champion, champion_report
        moved_from = champion.version if champion else "-"
        champion = steps.run(current_champion, cached=False, label=f"after v{moved_from}", model_name=challenger.name)
        steps.logger.info("the champion moved from v%s to v%s during this run: judging again", moved_from,
                          champion.version if champion else "-")
    raise AssertionError("the last judgement always decides")  # apply_gate's last_try never answers None
