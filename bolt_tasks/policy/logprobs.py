"""Sequence log-probabilities: log pi(y|x) = sum over response tokens of log pi(y_t | x, y_<t).

The trainer, the sampler's reference scoring and the evaluation's KL all use this sum; never a
per-token mean, which would change the distribution being fit (docs/DESIGN.md section 1).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from bolt_tasks.core.progress import track


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


def _chunk_logprob_sums(head, softcap, hidden, targets, mask) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap:  # Gemma-style final logit soft-capping, as the model's own forward applies it
        logits = torch.tanh(logits / softcap) * softcap
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logprobs * mask).sum(dim=-1)


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


@torch.no_grad()
def response_logprobs(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    batch_size: int = 512,
    description: str = "log-probs of responses",
) -> np.ndarray:
    """log pi(response | prompt) for each pair, with one separate forward pass at temperature 1."""
    device = next(model.parameters()).device
    sums = []
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, len(starts), description):
        batch = pad_prompt_response(
            prompts[start : start + batch_size], responses[start : start + batch_size], pad_id, device
        )
        sums.append(response_logprob_sums(model, *batch).double().cpu().numpy())
    return np.concatenate(sums) if sums else np.zeros(0)
