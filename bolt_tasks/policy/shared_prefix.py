"""Shared prompt prefixes: a prompt computed once for all of its responses.

A group is one prompt and responses to it. Packed, a group is one row: the prompt's tokens, then
each response's in turn. Under its 4D attention mask a response token sees the prompt and the
earlier tokens of its own response, nothing of the other responses, and its position ids
continue from the prompt's as they would after the prompt alone. Every position so computes what
it computes in prompt + response on its own: the log-probs, and their gradients, which flow back
into the prompt's positions from all of the group's responses, are those of the unshared path
(within float rounding), while the prompt is computed once instead of once per response:
P + N*R positions instead of N*(P + R).

The mask is a custom 4D mask, which transformers passes to the attention as it is: boolean for
SDPA, additive for eager attention. Other attention kernels (flash-attention, flex) ignore such a
mask, and a sliding window narrower than a packed row would be bypassed by it: for those models
`shares_prefixes` is False and the callers take the unshared path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Each micro-batch's mask and attention scores are [rows, (heads,) width, width]: bounded here.
MAX_MASK_CELLS = 1 << 24
# A packed row's width: a group wider than this is split into sub-groups (the prompt repeated in
# each), so a row's W x W mask stays within MAX_MASK_CELLS. Without it 64 samples of a
# 600-token answer would be one row of ~40k positions whose attention computes every tile.
MAX_PACKED_WIDTH = 1 << 12


def row_width(widest: int) -> int:
    """The widest packed row: MAX_PACKED_WIDTH, or one sequence when a sequence is wider."""
    return max(MAX_PACKED_WIDTH, widest)


@dataclass
class Group:
    """One prompt and the responses to it; `indices` are the responses' places in the caller's
    list of sequences."""

    prompt: list[int]
    responses: list[list[int]]
    indices: list[int]

    @property
    def width(self) -> int:
        return len(self.prompt) + sum(len(response) for response in self.responses)


def group_by_prompt(prompts: list[list[int]], responses: list[list[int]]) -> list[Group]:
    """The sequences grouped by identical prompt ids, in order of each prompt's first sequence."""
    groups: dict[tuple[int, ...], Group] = {}
    for index, (prompt, response) in enumerate(zip(prompts, responses)):
        key = tuple(prompt)
        if key not in groups:
            groups[key] = Group(list(prompt), [], [])
        groups[key].responses.append(list(response))
        groups[key].indices.append(index)
    return list(groups.values())


def split_wide(group: Group, max_width: int) -> list[Group]:
    """The group as sub-groups of consecutive responses, each within max_width positions where a
    single response allows it (the prompt repeated in each)."""
    parts, current = [], Group(group.prompt, [], [])
    for response, index in zip(group.responses, group.indices):
        if current.responses and current.width + len(response) > max_width:
            parts.append(current)
            current = Group(group.prompt, [], [])
        current.responses.append(response)
        current.indices.append(index)
    return parts + [current]


def micro_batches(groups: list[Group], max_tokens: int) -> list[list[Group]]:
    """Groups sorted by width (so a row is padded to a similar width) and cut into runs whose
    padded size (rows x widest row) stays within max_tokens and whose mask within
    MAX_MASK_CELLS; a group wider than that runs alone."""
    runs, current = [], []
    for group in sorted(groups, key=lambda g: g.width, reverse=True):
        rows, width = len(current) + 1, max([g.width for g in current] + [group.width])
        if current and (rows * width > max_tokens or rows * width * width > MAX_MASK_CELLS):
            runs.append(current)
            current = []
        current.append(group)
    return runs + [current] if current else runs


@dataclass
class PackedGroups:
    """Groups as rows of one forward pass, and where each response token's log-prob comes from."""

    ids: torch.Tensor  # [rows, width]
    positions: torch.Tensor  # [rows, width]
    mask: torch.Tensor  # [rows, 1, width, width]: True / 0.0 where a query position may attend
    predictors: torch.Tensor  # [tokens]: row * width + position of the state predicting each
    targets: torch.Tensor  # [tokens]: the response tokens
    owners: torch.Tensor  # [tokens]: the sequence (0 .. sequences - 1) each token belongs to
    sequences: int
    segments: torch.Tensor  # [rows, width] on the CPU: 0 prompt, j + 1 response j, -1 padding

    def padding_share(self) -> float:
        """The share of this pass's positions that are padding."""
        return 1.0 - float((self.segments >= 0).sum()) / self.segments.numel()


def pack(groups: list[Group], pad_id: int, device, additive_mask_dtype=None) -> PackedGroups:
    """One row per group. Sequences are numbered group by group, response by response.
    `additive_mask_dtype`: an additive float mask of this dtype (eager attention) instead of a
    boolean one (SDPA)."""
    width = max(group.width for group in groups)
    ids = torch.full((len(groups), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(groups), width), dtype=torch.long)
    segments = torch.full((len(groups), width), -1, dtype=torch.long)
    predictors, targets, owners, sequence = [], [], [], 0
    for row, group in enumerate(groups):
        prompt_length = len(group.prompt)
        if prompt_length == 0:
            raise ValueError("a shared prefix needs a prompt of at least one token")
        ids[row, :prompt_length] = torch.tensor(group.prompt)
        positions[row, :prompt_length] = torch.arange(prompt_length)
        segments[row, :prompt_length] = 0
        start = prompt_length
        for j, response in enumerate(group.responses):
            length = len(response)
            if length:
                ids[row, start : start + length] = torch.tensor(response)
                positions[row, start : start + length] = torch.arange(prompt_length, prompt_length + length)
                segments[row, start : start + length] = j + 1
                # The prompt's last state predicts the first token; each token predicts the next.
                states = [prompt_length - 1] + list(range(start, start + length - 1))
                predictors += [row * width + state for state in states]
                targets += response
                owners += [sequence] * length
            start += length
            sequence += 1
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = causal & (key >= 0) & ((key == 0) | (key == query)) & (query >= 0)
    allowed |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no empty softmax row
    mask = allowed.unsqueeze(1)
    if additive_mask_dtype is not None:
        mask = torch.zeros(mask.shape, dtype=additive_mask_dtype).masked_fill(
            ~mask, torch.finfo(additive_mask_dtype).min)
    return PackedGroups(
        ids.to(device), positions.to(device), mask.to(device),
        torch.tensor(predictors, dtype=torch.long, device=device),
        torch.tensor(targets, dtype=torch.long, device=device),
        torch.tensor(owners, dtype=torch.long, device=device), sequence, segments)


def attention_implementation(model) -> str | None:
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(causal.config, "_attn_implementation", None)


def shares_prefixes(model, width: int = 0) -> bool:
    """Whether this model's attention honours the packed rows' mask: SDPA or eager attention,
    and no sliding window narrower than `width`."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    window = getattr(causal.config, "sliding_window", None)
    windowed = window is not None and getattr(causal.config, "use_sliding_window", True)
    return attention_implementation(model) in ("sdpa", "eager") and not (windowed and width > window)


def pack_for(model, groups: list[Group], pad_id: int) -> PackedGroups:
    """`pack` with the mask the model's attention takes."""
    parameter = next(model.parameters())
    additive = parameter.dtype if attention_implementation(model) == "eager" else None
    return pack(groups, pad_id, parameter.device, additive)
