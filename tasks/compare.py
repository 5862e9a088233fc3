"""The comparison's report step: summary table, markdown and plot, as files and artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from multitask.compare import RunResult, summarise, write_report
from multitask.records import ComparisonReport, hash_files
from tasks.caching import output_dir


@task(name="report_comparison", result_serializer="json")
def report_comparison(results: list[RunResult], title: str) -> ComparisonReport:
    files = write_report(results, output_dir(), title)
    rows = summarise(results)
    create_table_artifact(key="multitask-comparison", table=rows,
                          description=f"{title}: test metrics per variant, mean and std over seeds")
    create_markdown_artifact(key="multitask-comparison-report", markdown=Path(files["markdown"]).read_text(),
                             description=title)
    paths = [Path(files[kind]) for kind in ("json", "markdown", "plot")]
    return ComparisonReport(rows=rows, json_path=files["json"], markdown_path=files["markdown"],
                            plot_path=files["plot"], fingerprint=hash_files(paths))
