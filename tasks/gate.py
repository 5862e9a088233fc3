"""Promotion steps of the retrain flow: find what changed, find the champion, apply the gate."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from multitask import registry
from multitask.config import GateConfig, RunConfig
from multitask.gate import HEADS, Decision, champion_moved, decide, not_comparable, unchanged_reason
from multitask.records import DatasetRef, EvalReport, ModelVersion
from tasks import retries
from tasks.exclusive import one_at_a_time
from tasks.pictures import inline_png
from tasks.register import publish_card


@task(name="find_unchanged", **retries.IO)
def find_unchanged(dataset: DatasetRef, config: RunConfig) -> tuple[ModelVersion, str] | None:
    """A version already made from this data, model and train settings and code, and why it
    stops the retrain (naming the settings that differ but do not make a model), or None."""
    tags = registry.lineage_tags(dataset, config)
    found = registry.find_version(config.model_name, {registry.LINEAGE_TAG: tags[registry.LINEAGE_TAG]})
    if found is None:
        return None
    return found, unchanged_reason(found.version, registry.changed_sections(found, tags))


@task(name="current_champion", **retries.IO)
def current_champion(model_name: str) -> ModelVersion | None:
    return registry.champion(model_name)


def _table(decision: Decision, challenger: ModelVersion, champion: ModelVersion | None) -> list[dict]:
    rows = []
    for head, metric in HEADS.items():
        rows.append({"head": head, "metric": metric,
                     f"challenger v{challenger.version}": decision.challenger[head],
                     f"champion v{champion.version}" if champion else "champion": (
                         decision.champion[head] if decision.champion else None),
                     "delta": decision.deltas.get(head)})
    return rows


@task(name="apply_gate", **retries.IO)
def apply_gate(challenger: ModelVersion, challenger_report: EvalReport, champion: ModelVersion | None,
               champion_report: EvalReport | None, gate: GateConfig, classes_differ: str | None = None,
               last_try: bool = True) -> Decision | None:
    """Decide, then under the model's promotion lock record the decision and numbers as tags, and
    move `champion` when it passes: only if the champion is still the one judged against.

    When it moved meanwhile (a retrain or a person promoted another version), nothing is recorded
    and the answer is None, so that the flow judges the challenger against the new champion; on
    the `last_try`, the challenger is kept out instead, naming both champions.
    `classes_differ` says how the champion's classes differ from the challenger's: then the two
    are not compared and the challenger is kept out.
    """
    if champion is not None and classes_differ is not None:
        decision = not_comparable(challenger_report.metrics, champion.version, classes_differ)
    else:
        decision = decide(challenger_report.metrics, champion_report.metrics if champion_report else None, gate,
                          challenger_report.slices, champion_report.slices if champion_report else None)
    judged = champion.version if champion else None
    with one_at_a_time("promote", challenger.name):
        current = registry.champion(challenger.name)
        now = current.version if current else None
        if now == challenger.version and _promoted_by_this_judgement(challenger, judged):
            pass  # a retry after this very promotion (a later part failed): it stands, recorded once
        elif now != judged:
            if not last_try:
                return None
            decision = champion_moved(challenger_report.metrics, judged, now)
            _record(decision, challenger, judged)
        else:
            _record(decision, challenger, judged)
    publish_card(challenger)  # again, now with the decision (outside the lock: a description, slow to render)
    create_table_artifact(key="gate-comparison", table=_table(decision, challenger, champion),
                          description="Champion vs challenger on the same test split, per head")
    verdict = "promoted to champion" if decision.promote else "kept out"
    create_markdown_artifact(key="gate-decision", description="Promotion decision", markdown="\n\n".join([
        f"# v{challenger.version} {verdict}", decision.reason,
        _side_by_side(challenger, challenger_report, champion, champion_report)]))
    return decision


def _promoted_by_this_judgement(challenger: ModelVersion, judged: str | None) -> bool:
    tags = registry.show(f"{challenger.name}/{challenger.version}")["tags"]
    return tags.get("gate.decision") == "promoted" and tags.get("gate.champion_version") == (judged or "")


def _record(decision: Decision, challenger: ModelVersion, judged: str | None) -> None:
    tags = {"gate.decision": "promoted" if decision.promote else "kept out", "gate.reason": decision.reason,
            "gate.champion_version": judged or "",
            **{f"gate.{head}": str(value) for head, value in decision.challenger.items()},
            **{f"gate.delta_{head}": str(value) for head, value in decision.deltas.items()}}
    if decision.promote:
        registry.promote(challenger.name, challenger.version, tags)
    else:
        registry.set_tags(challenger.name, challenger.version, tags)


def _side_by_side(challenger: ModelVersion, challenger_report: EvalReport, champion: ModelVersion | None,
                  champion_report: EvalReport | None) -> str:
    """The two models' predictions on the same test images, champion left, challenger right."""
    shown = [(f"challenger v{challenger.version}", challenger_report)]
    if champion is not None and champion_report is not None:
        shown.insert(0, (f"champion v{champion.version}", champion_report))
    return "\n".join([
        "| " + " | ".join(title for title, _ in shown) + " |",
        "|" + "---|" * len(shown),
        # two side by side must fit the UI's artifact column (about 780 px at 1400 px wide)
        "| " + " | ".join(inline_png(report.predictions_path, title, max_side=380) for title, report in shown) + " |",
    ])
