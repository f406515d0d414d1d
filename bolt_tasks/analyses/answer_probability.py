"""Exact success probability per prompt, for tasks with exactly one correct response.

On the built-in task the verifier accepts one string (the answer, then EOS), so
p_theta(x) = pi_theta(answer + EOS | x) is one forward pass away: no sampling noise. The
experiments use it to measure log-odds shifts that sampled estimates would blur.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bolt_tasks.core.caching import stage
from bolt_tasks.core.storage import ModelRef, TableRef, write_table_atomic
from bolt_tasks.core.tables import ANSWER_PROBABILITY_SCHEMA
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import encode_prompts, load_policy


def answer_probabilities(prompts: pa.Table, model_path: str, out_path: str | Path) -> TableRef:
    """(prompt_id, split, answer_logprob, answer_probability) for every prompt."""
    model, tokenizer = load_policy(model_path)
    prompt_ids = encode_prompts(tokenizer, prompts["prompt"].to_pylist())
    answers = [
        tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        for answer in prompts["answer"].to_pylist()
    ]
    logprobs = response_logprobs(
        model, prompt_ids, answers, tokenizer.pad_token_id, batch_size=2048,
        description=f"answer probabilities under {Path(model_path).name}",
    )
    table = pa.table(
        {
            "prompt_id": prompts["prompt_id"],
            "split": prompts["split"],
            "answer_logprob": logprobs,
            "answer_probability": np.exp(logprobs),
        },
        schema=ANSWER_PROBABILITY_SCHEMA,
    )
    return write_table_atomic(table, out_path)


@stage("answer-probability")
def answer_probability_task(prompts: TableRef, model: ModelRef, out_path: str) -> TableRef:
    return answer_probabilities(prompts.read(), model.path, out_path)
