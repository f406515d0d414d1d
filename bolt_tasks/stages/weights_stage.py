"""The weights stage: stages/weights.py's write_weights (the SQL in sql/) as a cached Prefect task,
and the check that the weighted rollouts have something to teach (stages/information.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.caching import stage
from bolt_tasks.core.storage import TableRef
from bolt_tasks.stages.information import require_information
from bolt_tasks.stages.weights import write_weights


@stage("weights")
def weights_task(
    rollouts: TableRef, rewards: TableRef, weighting: WeightingConfig, weights_path: str,
    stats_path: str,
) -> tuple[TableRef, TableRef]:
    return write_weights(rollouts.path, rewards.path, weighting, weights_path, stats_path)


@task(name="check-information", cache_policy=NO_CACHE)
def information_task(prompt_stats: TableRef, weights: TableRef, weighting: WeightingConfig) -> None:
    """Stop the round before training when its rollouts have nothing to teach, or when none of
    them is kept to train on."""
    require_information(prompt_stats.path, weighting, weights.path)
