"""Which examples of an optimizer batch each training process fits: equal token counts.

Dealing whole prompt groups round-robin leaves ranks idle when a batch has fewer groups than
ranks (a batch of 64 with N = 16 is 4 groups: on 8 GPUs, 4 ranks would run only zero-weight
filler) and makes every rank wait for the one with the widest groups. Here the batch's examples,
each prompt group kept together and in the batch's order, are laid end to end by token count and
cut into `size` runs of equal length: rank r fits the examples whose middle falls in the r-th
run. A rank's count is within one example of the mean, and a group is split across two ranks
only where a cut falls inside it (its prompt is then computed on both). The loss is a sum over
examples, so any such split fits the one-process fit (within float rounding).
"""

from __future__ import annotations

from bolt_tasks.policy.shared_prefix import group_by_prompt

Example = tuple  # (prompt ids, response ids, weight)


def grouped(batch: list[Example]) -> list[list[Example]]:
    """The batch's examples by prompt, the groups in order of first appearance
    (shared_prefix.group_by_prompt, which packs the same groups)."""
    prompts, responses = [e[0] for e in batch], [e[1] for e in batch]
    return [[batch[i] for i in group.indices] for group in group_by_prompt(prompts, responses)]


def example_costs(groups: list[list[Example]], share: bool) -> list[float]:
    """Positions each example adds to a forward pass: its response, and its prompt (shared
    prompts: the prompt's positions divided among its group)."""
    return [len(response) + (len(prompt) / len(group) if share else len(prompt))
            for group in groups for prompt, response, _ in group]


def rank_share(batch: list[Example], rank: int, size: int, share: bool) -> list[Example]:
    """Rank `rank`'s examples of `batch` (every rank sees the same batch): a contiguous run of
    the prompt-grouped examples holding a 1/size share of the batch's positions."""
    if size == 1:
        return list(batch)
    groups = grouped(batch)
    examples = [example for group in groups for example in group]
    costs = example_costs(groups, share)
    total = sum(costs)
    mine, start = [], 0.0
    for example, cost in zip(examples, costs):
        middle = start + cost / 2
        if min(size - 1, int(middle * size / total)) == rank:
            mine.append(example)
        start += cost
    return mine


def positions(examples: list[Example], share: bool) -> int:
    """Positions a rank's forward passes cover: responses, and each prompt once per prompt run
    with shared prefixes (once per example without)."""
    if not share:
        return sum(len(prompt) + len(response) for prompt, response, _ in examples)
    return sum(len(group[0][0]) + sum(len(response) for _, response, _ in group)
               for group in grouped(examples))
