"""The rollouts table of a round: N responses per training prompt from the sampler, with
log q (the sampler's log-prob) and log pi_ref (the reference's), whichever backend sampled."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import SamplingConfig
from bolt_tasks.policy.modeling import encode_prompts, load_tokenizer
from bolt_tasks.sampling.backends import sampler_for
from bolt_tasks.sampling.decode import decode_responses
from bolt_tasks.core.storage import ModelRef, TableRef, write_table_atomic

ROLLOUT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("response", pa.string()),
        ("response_token_ids", pa.list_(pa.int32())),
        ("sampler_logprob", pa.float64()),
        ("reference_logprob", pa.float64()),
        ("num_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("sampler_model", pa.string()),
        ("round", pa.int32()),
    ]
)


def sample_rollouts(
    prompts: pa.Table,
    sampler_model: str,
    reference_model: str,
    sampling: SamplingConfig,
    round_index: int,
    out_path: str | Path,
) -> TableRef:
    """Sample N responses for every training prompt; write rollouts.parquet.

    reference_logprob is log pi_ref(y|x) at temperature 1. When the sampler is pi_ref itself at
    temperature 1 it equals the sampler log-prob and is copied; otherwise pi_ref scores the
    responses in a separate pass (vLLM: its prompt log-probs of prompt + response). The vLLM
    engine's own output goes to vllm-sample.log / vllm-score.log beside the table.
    """
    start = time.perf_counter()
    out_path = Path(out_path)
    sampler = sampler_for(sampling)
    train = prompts.filter(pc.equal(prompts["split"], "train"))
    tokenizer = load_tokenizer(sampler_model)
    n = sampling.samples_per_prompt
    prompt_ids = encode_prompts(tokenizer, train["prompt"].to_pylist())
    result = sampler.sample(
        str(sampler_model), prompt_ids, sampling, log_path=out_path.with_name("vllm-sample.log")
    )
    if sampler_model == reference_model and sampling.temperature == 1.0:
        reference_logprobs = result.logprobs
    else:
        repeated = [ids for ids in prompt_ids for _ in range(n)]
        reference_logprobs = sampler.score(
            str(reference_model), repeated, result.token_ids, sampling,
            log_path=out_path.with_name("vllm-score.log"),
        )
    rows = len(result.token_ids)
    table = pa.table(
        {
            "prompt_id": [pid for pid in train["prompt_id"].to_pylist() for _ in range(n)],
            "sample_idx": list(range(n)) * train.num_rows,
            "response": decode_responses(tokenizer, result.token_ids),
            "response_token_ids": result.token_ids,
            "sampler_logprob": result.logprobs,
            "reference_logprob": reference_logprobs,
            "num_tokens": [len(t) for t in result.token_ids],
            "finish_reason": result.finish_reasons,
            "sampler_model": [str(sampler_model)] * rows,
            "round": [round_index] * rows,
        },
        schema=ROLLOUT_SCHEMA,
    )
    return write_table_atomic(table, out_path, time.perf_counter() - start)


@stage(
    "sample-rollouts",
    modules=("bolt_tasks.sampling.backends", "bolt_tasks.sampling.decode", "bolt_tasks.sampling.vllm_backend",
             "bolt_tasks.sampling.vllm_worker"),
)
def sample_task(
    prompts: TableRef, sampler: ModelRef, reference: ModelRef, sampling: SamplingConfig,
    round_index: int, out_path: str,
) -> TableRef:
    """`sampling.backend` should be resolved (samplers.resolve_backend) so the cache key names
    the backend that ran."""
    return sample_rollouts(prompts.read(), sampler.path, reference.path, sampling, round_index, out_path)
