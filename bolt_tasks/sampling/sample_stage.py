"""The sampling stage: sampling/rollouts.py's sample_rollouts as a cached Prefect task."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import SamplingConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.sampling.rollouts import sample_rollouts


@stage("sample-rollouts")
def sample_task(
    prompts: TableRef, sampler: ModelRef, reference: ModelRef, sampling: SamplingConfig,
    task: TaskConfig, round_index: int, out_path: str, shard: Shard | None = None,
    runs_root: str | None = None,
) -> TableRef:
    """`sampling.backend` should be resolved (backends.resolve_backend) so the cache key names
    the backend that ran. `runs_root`: the runs directory, which the table's sampler_model is
    written relative to."""
    return sample_rollouts(prompts.read(), sampler.path, reference.path, sampling, task, round_index,
                           out_path, shard, runs_root)
