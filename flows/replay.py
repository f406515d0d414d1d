"""Wiring of a refreshed round that replays earlier rounds' samples (weighting.replay_rounds):
pool them with the round's own, score the pool under every sampler, weight it by multiple
importance sampling (docs/DESIGN.md "Replay"). Returns what the fit reads."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from bolt_tasks.core.catalogue import RoundDirectory, RunsDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.results import RoundRollouts
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.stages.replay_stage import pool_logprobs_task, pool_task, replay_weights_task


def replays(config: RoundConfig) -> bool:
    return config.weighting.replay_rounds > 0 and config.round > 0


def sampler_of(rollouts_path: str, runs: RunsDirectory) -> ModelRef:
    """The policy that sampled a round, as its rollouts name it: a folder of the runs directory
    (named relative to it), a user's folder (absolute) or a hub id."""
    recorded = pq.read_table(rollouts_path, columns=["sampler_model"])["sampler_model"][0].as_py()
    if Path(recorded).is_absolute():
        return ModelRef.of_directory(recorded)
    if (runs.root / recorded).is_dir():
        return ModelRef.of_directory(runs.root / recorded)
    return ModelRef(recorded, f"hub:{recorded}")  # as bolt_tasks/stages/model_sources.py names one


def replayed_weights(config: RoundConfig, runs: RunsDirectory, round_dir: RoundDirectory,
                     scored: RoundRollouts, cached) -> tuple[tuple[TableRef, TableRef], TableRef, TableRef]:
    """((pooled rollouts, their log-probs), weights, prompt_stats) of round k over its own
    samples and those of the weighting.replay_rounds rounds before it."""
    first = max(0, config.round - config.weighting.replay_rounds)
    earlier = {k: runs.round(config.pipeline, k) for k in range(first, config.round)}
    rounds = {k: (TableRef.of_file(d.table("rollouts")), TableRef.of_file(d.table("rewards")))
              for k, d in earlier.items()} | {config.round: (scored.rollouts, scored.rewards)}
    samplers = {k: sampler_of(d.table("rollouts"), runs) for k, d in earlier.items()} | {
        config.round: scored.sampler}
    pooled_rollouts, pooled_rewards = cached(pool_task)(
        rounds, config.round, round_dir.table("replay_rollouts"), round_dir.table("replay_rewards"))
    logprobs = cached(pool_logprobs_task)(pooled_rollouts, samplers, round_dir.table("replay_logprobs"),
                                          config.evaluation.batch_size)
    weights, prompt_stats = cached(replay_weights_task)(
        pooled_rollouts, pooled_rewards, logprobs, config.round, config.weighting,
        round_dir.table("weights"), round_dir.table("prompt_stats"))
    return (pooled_rollouts, logprobs), weights, prompt_stats
