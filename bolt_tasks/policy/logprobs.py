"""Sequence log-probabilities: log pi(y|x) = sum over response tokens of log pi(y_t | x, y_<t).

The trainer, the sampler's reference scoring and the evaluation's KL all use this sum; never a
per-token mean, which would change the distribution being fit (docs/DESIGN.md section 1).
"""

from __future__ import annotations

import numpy as np
import torch

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


def response_logprob_sums(
    model, ids: torch.Tensor, attention: torch.Tensor, response_mask: torch.Tensor
) -> torch.Tensor:
    """Per-sequence sum of response-token log-probs (float32, differentiable)."""
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    targets = ids[:, 1:]
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logprobs * response_mask[:, 1:]).sum(dim=-1)


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
