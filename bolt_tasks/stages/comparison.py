"""pi_ref and the fitted policy side by side on the held-out prompts (eval.parquet): the exact
per-prompt target p* for 0/1 rewards, the policy's distance to it, the projection gap
KL(pi* || pi_theta), and the held-out means of bolt run's summary.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.duck import connect, sql_text, view
from bolt_tasks.core.results import HeldoutFigures
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import EVAL
from bolt_tasks.stages.weights import compute_weights


def projection_gap(
    samples: pa.Table | str, rewards: pa.Table | str, policy_logprobs: pa.Table | str, beta: float
) -> pa.Table:
    """Per prompt KL(pi* || pi_theta) by self-normalised importance sampling over stored samples
    (sql/projection_gap.sql, with the BOLT weights of sql/weights.sql). `samples` carries the
    rollout columns, `rewards` their rewards (the same table for evaluation samples)."""
    weights, _ = compute_weights(samples, rewards, WeightingConfig(beta=beta))
    connection = connect()
    view(connection, "samples", samples)
    view(connection, "policy_logprobs", policy_logprobs)
    connection.register("weights", weights)
    return connection.sql(sql_text("projection_gap")).to_arrow_table()


def _binomial_pmf(trials: int, rates: np.ndarray) -> np.ndarray:
    """pmf[i, k] = P(Binomial(trials, rates[i]) = k)."""
    k = np.arange(trials + 1)
    log_choose = np.array([math.lgamma(trials + 1) - math.lgamma(j + 1) - math.lgamma(trials - j + 1) for j in k])
    rates = np.clip(rates[:, None], 1e-300, 1 - 1e-16)
    return np.exp(log_choose + k * np.log(rates) + (trials - k) * np.log1p(-rates))


def target_error_noise_floor(reference_rates: np.ndarray, samples: int, target_grid: np.ndarray) -> float:
    """E|p_hat_theta - p*(p_hat_ref)| for a policy exactly on target, both rates from `samples`
    draws, plugging in the measured reference rates: the target_error a perfect fit would show.
    target_grid[k] is p*(k / samples)."""
    reference_rates = np.asarray(reference_rates, dtype=float)
    true_targets = np.interp(reference_rates, np.arange(samples + 1) / samples, target_grid)
    policy_pmf = _binomial_pmf(samples, true_targets)  # [prompt, k1]
    reference_pmf = _binomial_pmf(samples, reference_rates)  # [prompt, k2]
    distance = np.abs(np.arange(samples + 1)[:, None] / samples - target_grid[None, :])  # [k1, k2]
    return float(np.einsum("pa,ab,pb->p", policy_pmf, distance, reference_pmf).mean())


def combine_evaluations(
    reference_eval: str, policy_eval: str, reference_samples: str, policy_logprobs: str,
    beta: float, out_path: str | Path,
) -> TableRef:
    """eval.parquet: pi_ref and the policy per held-out prompt, with p* and the projection gap
    KL(pi* || pi_theta) (sql/eval.sql)."""
    gap = projection_gap(reference_samples, reference_samples, policy_logprobs, beta)
    connection = connect()
    connection.execute(sql_text("target_macro"))
    view(connection, "reference_eval", reference_eval)
    view(connection, "policy_eval", policy_eval)
    connection.register("projection_gap", gap)
    table = connection.sql(sql_text("eval"), params={"beta": beta}).to_arrow_table()
    return EVAL.write(table, out_path)


def heldout_summary(eval_path: str, beta: float) -> HeldoutFigures:
    """Held-out means of eval.parquet (sql/eval_summary.sql) and the target_error noise floor."""
    connection = connect()
    connection.execute(sql_text("target_macro"))
    view(connection, "eval", eval_path)
    summary = connection.sql(sql_text("eval_summary"), params={"beta": beta}).to_arrow_table()
    summary = summary.to_pylist()[0]
    samples = int(summary["heldout_samples_per_prompt"])
    grid = np.array(
        connection.sql(
            "SELECT target_success_rate(range / $m, $beta) FROM range(CAST($m AS BIGINT) + 1) "
            "ORDER BY range",
            params={"m": float(samples), "beta": beta},
        ).fetchall()
    )[:, 0]
    reference_rates = connection.sql("SELECT reference_success_rate FROM eval").fetchnumpy()
    return HeldoutFigures(**summary, target_error_noise_floor=target_error_noise_floor(
        reference_rates["reference_success_rate"], samples, grid
    ))
