"""The replay stages of a refreshed round (stages/replay.py) as cached Prefect tasks: the pool,
its log-probs under every sampler, and its weights (sql/replay_tilt.sql, then sql/weights.sql)."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.stages.replay import pool_rounds, score_pool
from bolt_tasks.stages.weights import Replay, write_weights


@stage("replay-pool")
def pool_task(rounds: dict[int, tuple[TableRef, TableRef]], current_round: int, rollouts_path: str,
              rewards_path: str) -> tuple[TableRef, TableRef]:
    return pool_rounds({k: (rollouts.path, rewards.path) for k, (rollouts, rewards) in rounds.items()},
                       current_round, rollouts_path, rewards_path)


@stage("replay-logprobs")
def pool_logprobs_task(pooled_rollouts: TableRef, samplers: dict[int, ModelRef], out_path: str,
                       batch_size: int) -> TableRef:
    return score_pool(pooled_rollouts.path, {k: model.path for k, model in samplers.items()}, out_path,
                      batch_size)


@stage("replay-weights")
def replay_weights_task(rollouts: TableRef, rewards: TableRef, pool_logprobs: TableRef,
                        current_round: int, weighting: WeightingConfig, weights_path: str,
                        stats_path: str) -> tuple[TableRef, TableRef]:
    return write_weights(rollouts.path, rewards.path, weighting, weights_path, stats_path,
                         replay=Replay(pool_logprobs.path, current_round))
