"""The comparison's report step: summary table, markdown and plot, as files and artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from multitask.compare import RunResult, write_report
from multitask.records import ComparisonReport
from tasks.caching import output_dir


@task(name="report_comparison", result_serializer="json")
def report_comparison(results: list[RunResult], title: str) -> ComparisonReport:
    report = write_report(results, output_dir("report_comparison", results=results, title=title), title)
    create_table_artifact(key="multitask-comparison", table=report.rows,
                          description=f"{title}: test metrics per variant, mean and std over seeds")
    create_markdown_artifact(key="multitask-comparison-report", markdown=Path(report.markdown_path).read_text(),
                             description=title)
    return report
