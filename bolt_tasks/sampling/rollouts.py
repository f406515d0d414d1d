"""The rollouts table of a round: N responses per training prompt from the sampler, with
log q (the sampler's log-prob) and log pi_ref (the reference's), whichever backend sampled."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from bolt_tasks.core.catalogue import RoundDirectory
from bolt_tasks.core.relocation import inside_runs
from bolt_tasks.core.config import SamplingConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import ROLLOUTS
from bolt_tasks.policy.modeling import load_tokenizer
from bolt_tasks.policy.prompting import render_prompts
from bolt_tasks.sampling.backends import sampler_dtype, sampler_for
from bolt_tasks.sampling.decode import decode_responses
from bolt_tasks.sampling.seeds import prompt_seeds


def render_task_prompts(tokenizer, prompts: pa.Table, task: TaskConfig) -> tuple[list[str], list[list[int]]]:
    """(text, token ids) of each row of a prompts table, as the task presents it."""
    messages = prompts["messages"].to_pylist() if "messages" in prompts.column_names else None
    return render_prompts(tokenizer, prompts["prompt"].to_pylist(), task.chat_template,
                          task.system_prompt, messages, task.chat_template_options)


def sample_rollouts(
    prompts: pa.Table,
    sampler_model: str,
    reference_model: str,
    sampling: SamplingConfig,
    task: TaskConfig,
    round_index: int,
    out_path: str | Path,
    shard: Shard | None = None,
    runs_root: str | Path | None = None,
) -> TableRef:
    """Sample N responses for every training prompt of `shard` (all of them by default); write
    rollouts.parquet (or the shard's part). Each prompt's responses come from its own seed.

    reference_logprob is log pi_ref(y|x) at temperature 1, pi_ref in float32. When the sampler is
    pi_ref itself, at temperature 1 and in float32, it equals the sampler log-prob and is copied;
    otherwise a float32 pass of the same backend computes it (vLLM: its prompt log-probs of
    prompt + response). sampler_logprob is always what the sampler drew with (its dtype), so the
    importance term log pi_ref - log q corrects for a bf16 sampler too. The vLLM engine's own output
    goes to vllm-sample.log / vllm-logprobs.log beside the table (or part). sampler_model names
    the sampler relative to `runs_root` when it lies in that runs directory (a moved directory's
    tables stay the same bytes), else as given (a user's folder, a hub id).
    """
    logs, suffix = RoundDirectory(Path(out_path).parent), shard.log_suffix if shard else ""
    sampler = sampler_for(sampling)
    train = prompts.filter(pc.equal(prompts["split"], "train"))
    if shard is not None:
        train = shard.of(train)
    tokenizer = load_tokenizer(sampler_model)
    n = sampling.samples_per_prompt
    prompt_texts, prompt_ids = render_task_prompts(tokenizer, train, task)
    result = sampler.sample(
        str(sampler_model), prompt_ids, sampling, log_path=logs.vllm_log(f"sample{suffix}"),
        seeds=prompt_seeds(sampling.seed, train["prompt_id"].to_pylist()),
    )
    if (sampler_model == reference_model and sampling.temperature == 1.0
            and sampler_dtype(sampling) == "float32"):
        reference_logprobs = result.logprobs
    else:
        repeated = [ids for ids in prompt_ids for _ in range(n)]
        reference_logprobs = sampler.response_logprobs(
            str(reference_model), repeated, result.token_ids,
            sampling.model_copy(update={"dtype": "float32"}),
            log_path=logs.vllm_log(f"logprobs{suffix}"),
        )
    rows = len(result.token_ids)
    table = pa.table(
        {
            "prompt_id": [pid for pid in train["prompt_id"].to_pylist() for _ in range(n)],
            "sample_idx": list(range(n)) * train.num_rows,
            "prompt_text": [text for text in prompt_texts for _ in range(n)],
            "prompt_token_ids": [ids for ids in prompt_ids for _ in range(n)],
            "response": decode_responses(tokenizer, result.token_ids),
            "response_token_ids": result.token_ids,
            "sampler_logprob": result.logprobs,
            "reference_logprob": reference_logprobs,
            "num_tokens": [len(t) for t in result.token_ids],
            "finish_reason": result.finish_reasons,
            "sampler_model": [inside_runs(sampler_model, runs_root)] * rows,
            "round": [round_index] * rows,
        },
        schema=ROLLOUTS.schema,
    )
    return ROLLOUTS.write(table, out_path)
