"""Evaluation on held-out prompts: accuracy at temperature 1 and greedy, pass@8, mean reward,
KL(pi_theta || pi_ref), J, and the distance of the policy's success rate to its target p*.

Each policy is evaluated once per prompt set (pi_ref's evaluation is shared by every round
and beta); sql/eval.sql then joins the two and computes p* exactly.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import EvaluationConfig, TaskConfig, WeightingConfig
from bolt_tasks.policy.logprobs import score_responses
from bolt_tasks.policy.modeling import encode_prompts, load_policy
from bolt_tasks.sampling.decode import decode_responses, generate
from bolt_tasks.core.storage import ModelRef, TableRef, write_table_atomic
from bolt_tasks.stages.verifiers import resolve_verifier, score_one
from bolt_tasks.stages.weights import compute_weights
from bolt_tasks.core.duck import connect, sql_text, view

POLICY_EVAL_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("difficulty", pa.int32()),
        ("samples", pa.int32()),
        ("success_rate", pa.float64()),
        ("mean_reward", pa.float64()),
        ("greedy_success", pa.float64()),
        ("pass_at_8", pa.float64()),
        ("pass_at_32", pa.float64()),
        ("mean_log_ratio", pa.float64()),
        ("verifier_errors", pa.int32()),
    ]
)


def pass_at_k(samples: int, successes: int, k: int) -> float:
    """Unbiased pass@k from `samples` draws with `successes` correct (Chen et al. 2021)."""
    if samples - successes < k:
        return 1.0
    return 1.0 - math.comb(samples - successes, k) / math.comb(samples, k)


SAMPLES_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("response_token_ids", pa.list_(pa.int32())),
        ("sampler_logprob", pa.float64()),
        ("reference_logprob", pa.float64()),
        ("reward", pa.float64()),
    ]
)


def evaluate_policy(
    prompts: pa.Table, model_path: str, reference_path: str, evaluation: EvaluationConfig,
    verifier_name: str, fallback_reward: float, out_path: str | Path, samples_path: str | Path,
) -> tuple[TableRef, TableRef]:
    """Per held-out prompt statistics of one policy (out_path) and its temperature-1 samples
    with their log-probs and rewards (samples_path: the projection gap's importance sample
    when the policy is pi_ref)."""
    start = time.perf_counter()
    heldout = prompts.filter(pc.equal(prompts["split"], "heldout"))
    model, tokenizer = load_policy(model_path)
    verifier = resolve_verifier(verifier_name)
    m = evaluation.samples_per_prompt
    prompt_ids = encode_prompts(tokenizer, heldout["prompt"].to_pylist())
    repeated = [ids for ids in prompt_ids for _ in range(m)]
    sampled = generate(
        model, tokenizer, repeated, 1.0, evaluation.max_new_tokens, evaluation.batch_size,
        evaluation.seed, description=f"evaluate {Path(model_path).name}: sample",
    )
    greedy = generate(
        model, tokenizer, prompt_ids, 0.0, evaluation.max_new_tokens, evaluation.batch_size,
        evaluation.seed, description=f"evaluate {Path(model_path).name}: greedy",
    )
    if model_path == reference_path:
        reference_logprobs = sampled.logprobs
    else:
        reference, _ = load_policy(reference_path)
        reference_logprobs = score_responses(
            reference, repeated, sampled.token_ids, tokenizer.pad_token_id,
            batch_size=evaluation.batch_size, description="score eval samples under pi_ref",
        )
    log_ratio = sampled.logprobs - reference_logprobs

    def verify(texts, reasons, answers, prompt_texts):
        scored = [score_one(verifier, p, a, t, f, fallback_reward)
                  for p, a, t, f in zip(prompt_texts, answers, texts, reasons)]
        return np.array([r for r, _ in scored]), np.array([e is not None for _, e in scored])

    answers, texts = heldout["answer"].to_pylist(), heldout["prompt"].to_pylist()
    rewards, errors = verify(
        decode_responses(tokenizer, sampled.token_ids), sampled.finish_reasons,
        [a for a in answers for _ in range(m)], [t for t in texts for _ in range(m)],
    )
    greedy_rewards, _ = verify(
        decode_responses(tokenizer, greedy.token_ids), greedy.finish_reasons, answers, texts
    )
    samples = pa.table(
        {
            "prompt_id": [pid for pid in heldout["prompt_id"].to_pylist() for _ in range(m)],
            "sample_idx": list(range(m)) * heldout.num_rows,
            "response_token_ids": sampled.token_ids,
            "sampler_logprob": sampled.logprobs,
            "reference_logprob": reference_logprobs,
            "reward": rewards,
        },
        schema=SAMPLES_SCHEMA,
    )
    rewards = rewards.reshape(-1, m)
    successes = (rewards >= evaluation.success_threshold).sum(axis=1)
    table = pa.table(
        {
            "prompt_id": heldout["prompt_id"],
            "difficulty": heldout["difficulty"],
            "samples": [m] * heldout.num_rows,
            "success_rate": successes / m,
            "mean_reward": rewards.mean(axis=1),
            "greedy_success": (greedy_rewards >= evaluation.success_threshold).astype(float),
            "pass_at_8": [pass_at_k(m, int(c), 8) for c in successes],
            "pass_at_32": [pass_at_k(m, int(c), 32) if m >= 32 else None for c in successes],
            "mean_log_ratio": log_ratio.reshape(-1, m).mean(axis=1),
            "verifier_errors": errors.reshape(-1, m).sum(axis=1),
        },
        schema=POLICY_EVAL_SCHEMA,
    )
    samples_ref = write_table_atomic(samples, samples_path)
    return write_table_atomic(table, out_path, time.perf_counter() - start), samples_ref


def score_samples(samples: pa.Table, prompts: pa.Table, model_path: str, out_path: str | Path) -> TableRef:
    """log pi_theta of stored samples: (prompt_id, sample_idx, policy_logprob)."""
    start = time.perf_counter()
    model, tokenizer = load_policy(model_path)
    prompt_text = dict(zip(prompts["prompt_id"].to_pylist(), prompts["prompt"].to_pylist()))
    prompt_ids = encode_prompts(tokenizer, [prompt_text[p] for p in samples["prompt_id"].to_pylist()])
    logprobs = score_responses(
        model, prompt_ids, samples["response_token_ids"].to_pylist(), tokenizer.pad_token_id,
        batch_size=2048, description=f"score samples under {Path(model_path).name}",
    )
    table = pa.table(
        {"prompt_id": samples["prompt_id"], "sample_idx": samples["sample_idx"],
         "policy_logprob": logprobs}
    )
    return write_table_atomic(table, out_path, time.perf_counter() - start)


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
    start = time.perf_counter()
    gap = projection_gap(reference_samples, reference_samples, policy_logprobs, beta)
    connection = connect()
    connection.execute(sql_text("target_macro"))
    view(connection, "reference_eval", reference_eval)
    view(connection, "policy_eval", policy_eval)
    connection.register("projection_gap", gap)
    table = connection.sql(sql_text("eval"), params={"beta": beta}).to_arrow_table()
    return write_table_atomic(table, out_path, time.perf_counter() - start)


def heldout_summary(eval_path: str, beta: float) -> dict:
    """Held-out means of eval.parquet (sql/eval_summary.sql) and the target_error noise floor."""
    connection = connect()
    connection.execute(sql_text("target_macro"))
    view(connection, "eval", eval_path)
    summary = connection.sql(sql_text("eval_summary"), params={"beta": beta}).to_arrow_table()
    summary = summary.to_pylist()[0]
    samples = int(summary["samples_per_prompt"])
    grid = np.array(
        connection.sql(
            "SELECT target_success_rate(range / $m, $beta) FROM range(CAST($m AS BIGINT) + 1) "
            "ORDER BY range",
            params={"m": float(samples), "beta": beta},
        ).fetchall()
    )[:, 0]
    reference_rates = connection.sql("SELECT reference_success_rate FROM eval").fetchnumpy()
    summary["target_error_noise_floor"] = target_error_noise_floor(
        reference_rates["reference_success_rate"], samples, grid
    )
    return summary


@stage("evaluate-policy")
def evaluate_task(
    prompts: TableRef, model: ModelRef, reference: ModelRef, evaluation: EvaluationConfig,
    task: TaskConfig, out_path: str, samples_path: str,
) -> tuple[TableRef, TableRef]:
    return evaluate_policy(
        prompts.read(), model.path, reference.path, evaluation, task.verifier,
        task.verifier_fallback_reward, out_path, samples_path,
    )


@stage("score-samples")
def score_samples_task(samples: TableRef, prompts: TableRef, model: ModelRef, out_path: str) -> TableRef:
    return score_samples(samples.read(), prompts.read(), model.path, out_path)


@stage(
    "compare-to-target",
    sql_files=("target_macro", "eval", "projection_gap", "log_tilt", "weights", "prompt_stats"),
)
def combine_task(
    reference_eval: TableRef, policy_eval: TableRef, reference_samples: TableRef,
    policy_logprobs: TableRef, beta: float, out_path: str,
) -> TableRef:
    return combine_evaluations(
        reference_eval.path, policy_eval.path, reference_samples.path, policy_logprobs.path,
        beta, out_path,
    )
