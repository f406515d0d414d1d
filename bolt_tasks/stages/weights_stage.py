"""The weights stage: stages/weights.py's write_weights (the SQL in sql/) as a cached Prefect task."""

from __future__ import annotations

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.caching import stage
from bolt_tasks.core.storage import TableRef
from bolt_tasks.stages.weights import write_weights


@stage("weights")
def weights_task(
    rollouts: TableRef, rewards: TableRef, weighting: WeightingConfig, weights_path: str,
    stats_path: str,
) -> tuple[TableRef, TableRef]:
    return write_weights(rollouts.path, rewards.path, weighting, weights_path, stats_path)
