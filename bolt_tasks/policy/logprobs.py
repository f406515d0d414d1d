"""Sequence log-probabilities: log pi(y|x) = sum over response tokens of log pi(y_t | x, y_<t).

The trainer, the sampler's reference scoring and the evaluation's KL all use this sum; never a
per-token mean, which would change the distribution being fit (docs/DESIGN.md section 1).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from bolt_tasks.core.progress import track
from bolt_tasks.policy.shared_prefix import (
    PackedGroups,
    group_by_prompt,
    micro_batches,
    pack_for,
    row_width,
    shares_prefixes,
    split_wide,
)


def pad_prompt_response(
    prompts: list[list[int]], responses: list[list[int]], pad_id: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+response ids, attention mask, and a mask of response positions.

    The response mask marks the positions of response tokens in `ids`; the logits that predict
    them sit one position earlier.
    """
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    response_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        sequence = prompt + response
        ids[row, : len(sequence)] = torch.tensor(sequence)
        attention[row, : len(sequence)] = 1
        response_mask[row, len(prompt) : len(sequence)] = True
    return ids.to(device), attention.to(device), response_mask.to(device)


# float32 logits computed at once: positions are taken in chunks of at most this many
# batch x position x vocabulary elements (2**26 = 256 MB), never the whole [batch, length, vocab].
LOGIT_BUDGET = 1 << 26


def _decoder_and_head(model):
    """The model's transformer body (ending in its final norm) and its output projection; a
    peft model is looked through to the model it adapts."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal.get_decoder(), causal.get_output_embeddings(), causal.config


def _token_logprobs(head, softcap, hidden, targets) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap:  # Gemma-style final logit soft-capping, as the model's own forward applies it
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _chunk_logprob_sums(head, softcap, hidden, targets, mask) -> torch.Tensor:
    return (_token_logprobs(head, softcap, hidden, targets) * mask).sum(dim=-1)


def response_logprob_sums(
    model, ids: torch.Tensor, attention: torch.Tensor, response_mask: torch.Tensor
) -> torch.Tensor:
    """Per-sequence sum of response-token log-probs (float32, differentiable).

    The output projection and log-softmax run over chunks of positions, so a large vocabulary
    on long sequences never needs the whole float32 [batch, length, vocab] logits; when
    training, each chunk is recomputed in the backward pass instead of kept."""
    decoder, head, config = _decoder_and_head(model)
    hidden = decoder(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]
    targets, mask = ids[:, 1:], response_mask[:, 1:]
    softcap = getattr(config, "final_logit_softcapping", None)
    batch, positions = targets.shape
    chunk = max(1, LOGIT_BUDGET // (batch * head.out_features))
    sums = torch.zeros(batch, device=ids.device, dtype=torch.float32)
    for start in range(0, positions, chunk):
        part = slice(start, start + chunk)
        if not mask[:, part].any():  # prompt or padding only: no loss term here
            continue
        arguments = (head, softcap, hidden[:, part], targets[:, part], mask[:, part])
        if torch.is_grad_enabled():
            sums = sums + checkpoint(_chunk_logprob_sums, *arguments, use_reentrant=False)
        else:
            sums = sums + _chunk_logprob_sums(*arguments)
    return sums


def packed_logprob_sums(model, packed: PackedGroups) -> torch.Tensor:
    """Per-sequence sum of response-token log-probs of packed groups (policy/shared_prefix.py):
    float32, differentiable, in the order the groups number their sequences. Only the states
    that predict a response token reach the output projection, in chunks within LOGIT_BUDGET,
    recomputed in the backward pass when training."""
    decoder, head, config = _decoder_and_head(model)
    hidden = decoder(input_ids=packed.ids, attention_mask=packed.mask,
                     position_ids=packed.positions).last_hidden_state
    states = hidden.reshape(-1, hidden.shape[-1])
    softcap = getattr(config, "final_logit_softcapping", None)
    chunk = max(1, LOGIT_BUDGET // head.out_features)
    sums = torch.zeros(packed.sequences, device=hidden.device, dtype=torch.float32)
    for start in range(0, len(packed.targets), chunk):
        part = slice(start, start + chunk)
        arguments = (head, softcap, states[packed.predictors[part]], packed.targets[part])
        if torch.is_grad_enabled():
            token_logprobs = checkpoint(_token_logprobs, *arguments, use_reentrant=False)
        else:
            token_logprobs = _token_logprobs(*arguments)
        sums = sums.index_add(0, packed.owners[part], token_logprobs)
    return sums


def _shared_prefix_logprobs(model, prompts, responses, pad_id, batch_size, description) -> np.ndarray | None:
    """None when the model cannot take these packed rows (shared_prefix.shares_prefixes).
    Packed chunk by chunk of batch_size sequences, as the unshared path batches them: a matmul's
    rows change in the last bits with the rows beside them, and prompt shards start at these
    chunks' boundaries, so each shard computes the bits one pass over all prompts computes."""
    chunks = []
    for start in range(0, len(prompts), batch_size):
        chunk_prompts, chunk_responses = prompts[start : start + batch_size], responses[start : start + batch_size]
        widest = max(len(p) + len(r) for p, r in zip(chunk_prompts, chunk_responses))
        # As many positions per pass as batch_size unshared sequences would take at most.
        budget = batch_size * widest
        parts = [part for group in group_by_prompt(chunk_prompts, chunk_responses)
                 for part in split_wide(group, min(budget, row_width(widest)))]
        if not shares_prefixes(model, max(part.width for part in parts)):
            return None
        chunks.append((start, micro_batches(parts, budget)))
    runs = [(start, run) for start, chunk_runs in chunks for run in chunk_runs]
    out = np.zeros(len(prompts))
    for start, run in track(runs, len(runs), description):
        sums = packed_logprob_sums(model, pack_for(model, run, pad_id)).double().cpu().numpy()
        out[[start + index for group in run for index in group.indices]] = sums
    return out


@torch.no_grad()
def response_logprobs(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    batch_size: int = 512,
    description: str = "log-probs of responses",
    share_prefixes: bool = True,
) -> np.ndarray:
    """log pi(response | prompt) for each pair at temperature 1. Responses to one prompt share
    its computation (policy/shared_prefix.py) when the model's attention allows it; otherwise,
    and with `share_prefixes=False`, each pair is its own padded sequence."""
    if not prompts:
        return np.zeros(0)
    shared = (_shared_prefix_logprobs(model, prompts, responses, pad_id, batch_size, description)
              if share_prefixes else None)
    if shared is not None:
        return shared
    device = next(model.parameters()).device
    sums = []
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, len(starts), description):
        batch = pad_prompt_response(
            prompts[start : start + batch_size], responses[start : start + batch_size], pad_id, device
        )
        sums.append(response_logprob_sums(model, *batch).double().cpu().numpy())
    return np.concatenate(sums) if sums else np.zeros(0)
