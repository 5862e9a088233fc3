"""compare_flow: single-task baselines vs the multi-task model under each weighting, over seeds."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from flows.runners import task_runner
from flows.steps import Steps
from multitask import compare, workspace
from multitask.config import RunConfig
from multitask.errors import ConfigError
from tasks.compare import report_comparison
from tasks.evaluate import evaluate_model
from tasks.model import build_model, train_model


@flow(name="compare")
def compare_flow(config: RunConfig = RunConfig(), seeds: int = 3,  # noqa: B008 (a frozen default)
                 variants: list[str] | None = None) -> dict[str, Any]:
    """Train and evaluate every (variant, seed) as mapped, cached tasks; report the comparison.

    All variants of one seed start from the same initial model. The flow's task runner bounds
    how many trainings run at once (`run_compare`'s `concurrency`).
    """
    variants = compare.check_variants(variants or list(compare.VARIANTS))
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    workspace.ensure()
    steps = Steps()
    dataset, snapshot = steps.data(config)
    runs = [(variant, seed) for seed in range(seeds) for variant in variants]
    initial = {seed: steps.run(build_model, label=f"seed{seed}", model=compare.model_config(config, seed),
                               num_classes=dataset.num_classes, image_size=snapshot.image_size)
               for seed in range(seeds)}
    labels = [f"{variant}/seed{seed}" for variant, seed in runs]
    trained = steps.map(train_model, labels, model=[initial[seed] for _, seed in runs], snapshot=unmapped(snapshot),
                        train_config=[compare.train_config(config, variant, seed) for variant, seed in runs])
    reports = steps.map(evaluate_model, labels, trained=trained, snapshot=unmapped(snapshot),
                        evaluate_config=unmapped(config.evaluate))
    results = [compare.run_result(variant, seed, t, r) for (variant, seed), t, r in zip(runs, trained, reports)]
    budget = (f"at most {config.train.epochs} epochs" if config.train.early_stopping_patience
              else f"{config.train.epochs} epochs")
    title = f"Multi-task vs single-task on {config.data.dataset} ({budget}, {seeds} seeds)"
    report = steps.run(report_comparison, results=results, title=title)
    return {"dataset": config.data.dataset, "seeds": seeds, "rows": report.rows,
            "report": report.markdown_path, "plot": report.plot_path, "json": report.json_path,
            "steps": steps.states}


def run_compare(config: RunConfig, seeds: int = 3, variants: list[str] | None = None, concurrency: int = 1,
                runner: str = "thread", dask_address: str | None = None) -> dict[str, Any]:
    """Run `compare_flow` (all variants unless named) with at most `concurrency` trainings at a time
    on `runner` (`flows.runners.task_runner`)."""
    return compare_flow.with_options(task_runner=task_runner(concurrency, runner, dask_address))(
        config=config, seeds=seeds, variants=variants)
