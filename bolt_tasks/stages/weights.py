"""Weights stage: run sql/ in DuckDB over rollouts and rewards; write weights and prompt_stats.

Python only passes parameters and moves tables; every weight, partition function and ESS is
computed by the SQL files in sql/ (the package `bolt_sql`). The stage has DuckDB write its
Parquet files itself, so its memory is DuckDB's (bounded by its memory limit), whatever the
number of rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from bolt_tasks.core.config import MAX_ABS_REWARD, WeightingConfig
from bolt_tasks.core.duck import connect, sql_text, view
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.storage import TableRef, atomic_path
from bolt_tasks.core.tables import PROMPT_STATS, WEIGHTS


def _rewards_view(connection, rewards: pa.Table | str) -> None:
    """View `rewards`, with an all-NULL `error` column when the table has none (a table of
    evaluation samples, or one built by hand): every response counts as verified."""
    view(connection, "given_rewards", rewards)
    columns = {row[0] for row in connection.execute("DESCRIBE given_rewards").fetchall()}
    error = "" if "error" in columns else ", CAST(NULL AS VARCHAR) AS error"
    connection.execute(f"CREATE VIEW rewards AS SELECT *{error} FROM given_rewards")


def _check_rewards(connection, rewards_path: str, scheme: str) -> None:
    bad = connection.sql(sql_text("validate_rewards"),
                         params={"scheme": scheme, "max_abs_reward": MAX_ABS_REWARD}).fetchall()
    if bad:
        row, prompt_id, sample_idx, reward = bad[0]
        need = (f"finite numbers within +-{MAX_ABS_REWARD:g}"
                + (", and >= 0 for the 'reward' scheme" if scheme == "reward" else ""))
        raise BoltInputError(
            f"{rewards_path} row {row}: field 'reward' is {reward} (prompt_id={prompt_id!r}, "
            f"sample_idx={sample_idx}); rewards must be {need}"
        )


def _check_finite(connection, weighting: WeightingConfig) -> None:
    """A NaN log-weight, or an infinite weight, would train a NaN policy: stop here instead."""
    [(count, prompt_id, sample_idx, reward)] = connection.sql(sql_text("invalid_weights")).fetchall()
    if count:
        raise BoltInputError(
            f"weights of {count} rollouts are not finite (first: prompt {prompt_id!r} "
            f"sample {sample_idx}, reward {reward}) under scheme "
            f"{weighting.scheme!r} with beta={weighting.beta:g}, eta={weighting.eta}")


def _weigh(connection, rollouts: pa.Table | str, rewards: pa.Table | str,
           weighting: WeightingConfig, replay: Replay | None = None) -> str:
    """Tables `tilted` and `weights` in `connection`; returns the prompt-statistics query.
    Both tables stay in DuckDB, whose memory limit spills them to disk. With `replay`, the
    rollouts are a pool of several samplers' and the tilt is sql/replay_tilt.sql's."""
    connection.execute(sql_text("exact_sum_macro"))  # weights.sql and prompt_stats.sql sum with it
    view(connection, "rollouts", rollouts)
    _rewards_view(connection, rewards)
    _check_rewards(
        connection, rewards if isinstance(rewards, str) else "rewards table", weighting.scheme
    )
    if replay is None:
        connection.execute(
            f"CREATE TEMP TABLE tilted AS {sql_text('log_tilt')}",
            {"beta": weighting.beta, "scheme": weighting.scheme, "rft_threshold": weighting.rft_threshold,
             "eta": weighting.eta, "alpha": weighting.alpha},
        )
    else:
        _replay_tilt(connection, weighting, replay)
    connection.execute(f"CREATE TEMP TABLE weights AS {sql_text('weights')}",
                       {"keep": weighting.zero_information_keep,
                        "keep_seed": weighting.zero_information_seed, "scheme": weighting.scheme})
    _check_finite(connection, weighting)
    return sql_text("prompt_stats")


@dataclass(frozen=True)
class Replay:
    """A pooled round's extra input: every pooled response's log-prob under every sampler of
    its prompt's pool (prompt_id, sample_idx, round, logprob), and the round k whose sampler
    q_k the target refers to."""

    pool_logprobs: pa.Table | str
    current_round: int


def _replay_tilt(connection, weighting: WeightingConfig, replay: Replay) -> None:
    if weighting.scheme != "bolt":
        raise BoltInputError(f"replaying earlier rounds' samples weights them by the bolt scheme "
                             f"(multiple importance sampling), not {weighting.scheme!r}")
    view(connection, "pool_logprobs", replay.pool_logprobs)
    [(missing, first)] = connection.sql(sql_text("replay_coverage"),
                                        params={"current_round": replay.current_round}).fetchall()
    if missing:
        raise BoltInputError(
            f"pool_logprobs lacks {missing} log-prob(s) a replayed round needs (first: prompt "
            f"{first[0]!r} sample {first[1]} under the sampler of round {first[2]}): every pooled "
            "response must be scored under every sampler of its prompt's pool")
    connection.execute(
        f"CREATE TEMP TABLE tilted AS {sql_text('replay_tilt')}",
        {"beta": weighting.beta, "eta": weighting.eta, "alpha": weighting.alpha,
         "current_round": replay.current_round},
    )


def _stats_parameters(weighting: WeightingConfig) -> dict:
    return {"beta": weighting.beta, "success_threshold": weighting.success_threshold}


def compute_weights(
    rollouts: pa.Table | str, rewards: pa.Table | str, weighting: WeightingConfig,
    connection=None, replay: Replay | None = None,
) -> tuple[pa.Table, pa.Table]:
    """(weights, prompt_stats) for rollouts and rewards given as Arrow tables or Parquet paths;
    `connection`: a DuckDB connection of the caller's (its memory limit, its threads); `replay`:
    the rollouts pool several samplers' (sql/replay_tilt.sql)."""
    connection = connection or connect()
    stats_query = _weigh(connection, rollouts, rewards, weighting, replay)
    # weights.sql's ORDER BY is the table's insertion order, which a plain scan keeps.
    weights = connection.table("weights").to_arrow_table()
    stats = connection.sql(stats_query, params=_stats_parameters(weighting)).to_arrow_table()
    return WEIGHTS.conform(weights), PROMPT_STATS.conform(stats)


def summarize_prompt_stats(stats: pa.Table | str) -> dict:
    """Means over prompts of prompt_stats (sql/weights_summary.sql)."""
    connection = connect()
    view(connection, "prompt_stats", stats)
    return connection.sql(sql_text("weights_summary")).to_arrow_table().to_pylist()[0]


def write_weights(
    rollouts_path: str, rewards_path: str, weighting: WeightingConfig,
    weights_path: str | Path, stats_path: str | Path, connection=None, replay: Replay | None = None,
) -> tuple[TableRef, TableRef]:
    """The weights and prompt statistics written by DuckDB straight to Parquet (at 100M
    rollouts neither table need fit in memory), both or neither."""
    connection = connection or connect()
    stats_query = _weigh(connection, rollouts_path, rewards_path, weighting, replay)
    with atomic_path(weights_path) as weights_temp, atomic_path(stats_path) as stats_temp:
        WEIGHTS.copy_from(connection, "SELECT * FROM weights", weights_temp)
        PROMPT_STATS.copy_from(connection, stats_query, stats_temp, _stats_parameters(weighting))
    return TableRef.of_file(weights_path), TableRef.of_file(stats_path)
