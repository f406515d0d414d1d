"""Refreshed rounds: KL policy mirror descent. Round k samples from pi_k (pi_0 = pi_ref) and
fits pi_(k+1) ∝ pi_k^(1-alpha) pi_ref^alpha exp(eta r) starting from pi_k (docs/DESIGN.md
section 1).

Wiring only. Every stage is cached, so rounds completed by an earlier invocation (or before a
crash) are walked through from the cache in milliseconds and only missing work runs.
"""

from __future__ import annotations

from prefect import flow

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import RefreshConfig
from bolt_tasks.core.executors import ShardRunners
from bolt_tasks.core.results import RefreshResult
from bolt_tasks.core.run_names import refresh_flow_run_name
from bolt_tasks.core.tracking import run_failed_on_error
from bolt_tasks.stages.lineage import (
    finish_parent_run_task,
    rounds_to_run,
    start_parent_run_task,
)
from bolt_tasks.stages.round_report import report_rounds_task
from flows.round import round_stages


@flow(name="bolt-refresh", flow_run_name=refresh_flow_run_name)
def bolt_refresh(config: RefreshConfig = RefreshConfig(), runs_dir: str = "runs") -> RefreshResult:
    """Add refreshed BOLT rounds to a pipeline: each samples from the newest policy."""
    runs = RunsDirectory.at(runs_dir)
    base = config.round
    pipeline = runs.pipeline(base.pipeline)
    with pipeline.lock():
        completed = pipeline.completed_rounds()
        last = rounds_to_run(completed, config.add_rounds, config.until_round)
        first_new = completed[-1] + 1 if completed else 0
        parent = start_parent_run_task(base.pipeline, runs, first_new, last, config.model_dump(mode="json"))
        reference = sampler = previous_run = None
        summaries = []
        # one executor (one Ray connection) for all the rounds
        with run_failed_on_error(runs, parent), ShardRunners(base.execution, runs.root, base.sampling.tensor_parallel_size) as shards:
            for k in range(last + 1):
                summary, sampler, reference = round_stages(
                    base.model_copy(update={"round": k}), runs, reference, sampler,
                    parent_run_id=parent, previous_run_id=previous_run, shards=shards,
                )
                previous_run = summary.mlflow_run_id
                summaries.append(summary)
            plot = finish_parent_run_task(parent, summaries, pipeline, runs)
            report_rounds_task(summaries)
    return RefreshResult(parent_run_id=parent, rounds=summaries, plot=plot)
