"""Evaluation of one policy on the held-out prompts: accuracy at temperature 1 and greedy,
pass@8 and pass@32, mean reward, and the mean log-ratio log pi_theta - log pi_ref of its samples
(its KL to pi_ref). Each policy is evaluated once per prompt set; stages/comparison.py puts pi_ref
and the policy side by side.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bolt_tasks.core.catalogue import RoundDirectory
from bolt_tasks.core.config import EvaluationConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.storage import TableRef, write_table_atomic
from bolt_tasks.core.tables import (
    EVAL_SAMPLES_SCHEMA,
    HELDOUT_EVAL_SCHEMA,
    SAMPLE_LOGPROBS_SCHEMA,
)
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import load_policy, load_tokenizer
from bolt_tasks.sampling.backends import SAMPLERS, evaluation_sampling
from bolt_tasks.sampling.decode import decode_responses
from bolt_tasks.sampling.rollouts import render_task_prompts
from bolt_tasks.sampling.seeds import prompt_seeds
from bolt_tasks.stages.verifiers import check_error_share, prompt_rows, score_responses


def pass_at_k(samples: int, successes: int, k: int) -> float:
    """Unbiased pass@k from `samples` draws with `successes` correct (Chen et al. 2021)."""
    if samples - successes < k:
        return 1.0
    return 1.0 - math.comb(samples - successes, k) / math.comb(samples, k)


def evaluate_policy(
    prompts: pa.Table, model_path: str, reference_path: str, evaluation: EvaluationConfig,
    task: TaskConfig, out_path: str | Path, samples_path: str | Path, stop: list[str] = (),
    shard: Shard | None = None,
) -> tuple[TableRef, TableRef]:
    """Per held-out prompt statistics of one policy (out_path) and its temperature-1 samples
    with their log-probs and rewards (samples_path: the projection gap's importance sample
    when the policy is pi_ref), for the held-out prompts of `shard` (all by default). A
    response the verifier could not score is never a success."""
    heldout = prompts.filter(pc.equal(prompts["split"], "heldout"))
    if shard is not None:
        heldout = shard.of(heldout)
    seeds = prompt_seeds(evaluation.seed, heldout["prompt_id"].to_pylist())
    tokenizer = load_tokenizer(model_path)
    m = evaluation.samples_per_prompt
    _, prompt_ids = render_task_prompts(tokenizer, heldout, task)
    repeated = [ids for ids in prompt_ids for _ in range(m)]
    at_one, greedy_settings = (evaluation_sampling(evaluation, m, 1.0, list(stop)),
                               evaluation_sampling(evaluation, 1, 0.0, list(stop)))
    sampler = SAMPLERS[at_one.backend]
    logs = RoundDirectory(Path(out_path).parent)
    name = Path(out_path).stem  # reference_eval or policy_eval: one vLLM log each
    # One model load (one vLLM engine start) for the samples and the greedy responses.
    sampled, greedy = sampler.sample_passes(model_path, prompt_ids, [at_one, greedy_settings],
                                            log_path=logs.vllm_log(f"{name}-sample"), seeds=seeds)
    if model_path == reference_path:
        reference_logprobs = sampled.logprobs
    else:
        reference_logprobs = sampler.response_logprobs(
            reference_path, repeated, sampled.token_ids, at_one,
            log_path=logs.vllm_log(f"{name}-logprobs"))
    log_ratio = sampled.logprobs - reference_logprobs

    rows = prompt_rows(heldout)
    texts, answers, metadata = ([row[key] for row in rows] for key in ("prompt", "answer", "metadata"))
    items = list(zip([t for t in texts for _ in range(m)], [a for a in answers for _ in range(m)],
                     decode_responses(tokenizer, sampled.token_ids), sampled.finish_reasons,
                     [x for x in metadata for _ in range(m)]))
    items += zip(texts, answers, decode_responses(tokenizer, greedy.token_ids), greedy.finish_reasons,
                 metadata)
    all_rewards, all_errors = score_responses(items, task, f"verify {Path(model_path).name}'s samples")
    rewards, errors = all_rewards[: len(repeated)], all_errors[: len(repeated)]
    verified = np.array([e is None for e in all_errors])
    keys = list(zip([pid for pid in heldout["prompt_id"].to_pylist() for _ in range(m)],
                    list(range(m)) * heldout.num_rows))
    samples = pa.table(
        {
            "prompt_id": [k[0] for k in keys],
            "sample_idx": [k[1] for k in keys],
            "prompt_token_ids": repeated,
            "response_token_ids": sampled.token_ids,
            "sampler_logprob": sampled.logprobs,
            "reference_logprob": reference_logprobs,
            "reward": rewards,
            "error": errors,
        },
        schema=EVAL_SAMPLES_SCHEMA,
    )
    success = (all_rewards >= evaluation.success_threshold) & verified
    successes = success[: len(repeated)].reshape(-1, m).sum(axis=1)
    rewards = rewards.reshape(-1, m)
    table = pa.table(
        {
            "prompt_id": heldout["prompt_id"],
            "difficulty": heldout["difficulty"],
            "samples": [m] * heldout.num_rows,
            "success_rate": successes / m,
            "mean_reward": rewards.mean(axis=1),
            "greedy_success": success[len(repeated):].astype(float),
            "pass_at_8": [pass_at_k(m, int(c), 8) for c in successes],
            "pass_at_32": [pass_at_k(m, int(c), 32) if m >= 32 else None for c in successes],
            "mean_log_ratio": log_ratio.reshape(-1, m).mean(axis=1),
            "verifier_errors": (~verified[: len(repeated)]).reshape(-1, m).sum(axis=1),
        },
        schema=HELDOUT_EVAL_SCHEMA,
    )
    samples_ref = write_table_atomic(samples, samples_path)
    evaluated = write_table_atomic(table, out_path)
    check_error_share(errors, keys, task, samples_path)
    return evaluated, samples_ref


def sample_logprobs(samples: pa.Table, model_path: str, out_path: str | Path,
                    batch_size: int = 2048) -> TableRef:
    """log pi_theta of stored samples (rollouts or evaluation samples, which carry the exact
    prompt ids they were drawn for): (prompt_id, sample_idx, policy_logprob), `batch_size`
    sequences per forward pass (evaluation.batch_size for held-out samples: passes much larger
    than the CPU's caches are slower; the docs' benchmarks page has the figures)."""
    model, tokenizer = load_policy(model_path)
    logprobs = response_logprobs(
        model, samples["prompt_token_ids"].to_pylist(), samples["response_token_ids"].to_pylist(),
        tokenizer.pad_token_id,
        batch_size=batch_size, description=f"log-probs of samples under {Path(model_path).name}",
    )
    table = pa.table(
        {"prompt_id": samples["prompt_id"], "sample_idx": samples["sample_idx"],
         "policy_logprob": logprobs},
        schema=SAMPLE_LOGPROBS_SCHEMA,
    )
    return write_table_atomic(table, out_path)
