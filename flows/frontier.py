"""The temperature-coverage-variance frontier of one round's stored rollouts (no training)."""

from __future__ import annotations

from prefect import flow

from bolt_tasks.analyses.frontier import DEFAULT_BETAS, frontier_task
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.results import AnalysisResult
from bolt_tasks.core.run_names import frontier_flow_run_name


@flow(name="bolt-frontier", flow_run_name=frontier_flow_run_name)
def bolt_frontier(
    pipeline: str = "default", round: int = 0, runs_dir: str = "runs",
    betas: list[float] = list(DEFAULT_BETAS),
) -> AnalysisResult:
    """For each beta: mean ESS/N, share of prompts with ESS/N < 0.1, coverage, mean target
    success p*, mean stored-support price; a table and a PNG, logged to MLflow."""
    return frontier_task(pipeline, round, RunsDirectory.at(runs_dir), betas)
