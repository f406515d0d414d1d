"""How much of a training pass is padding, and how many positions it computes, before and after
prompt groups: one epoch of a round's rollouts batched as the trainer batches them.

- before: training.batch_order=rollouts, share_prompt_prefix=false: batches of rollouts
  shuffled one by one, each micro-batch padded to its longest prompt + response;
- after: batch_order=prompt_groups, share_prompt_prefix=true: batches of whole prompt groups,
  each group one packed row (the prompt once, then its responses), rows of similar width
  together, each micro-batch padded to its widest row.
Positions are rows x width summed over the micro-batches (what the forward pass computes);
padding is the share of them that hold no token.

    python bench/padding_share.py runs/smollm2/round-0/rollouts.parquet [--batch-size 32]
        [--max-tokens-per-micro-batch 4096]
"""

from __future__ import annotations

import argparse
import json

import pyarrow.parquet as pq
import torch

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.policy.training import batch_order, micro_batches, shared_micro_batches


def epoch_positions(examples: list, training: TrainingConfig) -> dict:
    """Positions one epoch computes and the tokens they hold (a packed row holds its prompt
    once), summed over the micro-batches."""
    order = batch_order(examples, training, torch.Generator().manual_seed(training.seed))
    held = positions = 0
    for first in range(0, len(order), training.batch_size):
        batch = [examples[i] for i in order[first : first + training.batch_size]]
        if training.share_prompt_prefix:
            for groups, _ in shared_micro_batches(batch, training.max_tokens_per_micro_batch):
                positions += len(groups) * max(group.width for group in groups)
                held += sum(group.width for group in groups)
        else:
            for run in micro_batches(batch, training.max_tokens_per_micro_batch):
                positions += len(run) * max(len(p) + len(r) for p, r, _ in run)
                held += sum(len(p) + len(r) for p, r, _ in run)
    return {"positions": positions, "tokens": held, "padding_share": round(1 - held / positions, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rollouts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens-per-micro-batch", type=int, default=4096)
    args = parser.parse_args()
    table = pq.read_table(args.rollouts, columns=["prompt_token_ids", "response_token_ids"])
    examples = [(p, r, 1.0) for p, r in zip(table["prompt_token_ids"].to_pylist(),
                                            table["response_token_ids"].to_pylist())]
    report = {}
    for name, order, share in (("before", "rollouts", False), ("after", "prompt_groups", True)):
        training = TrainingConfig(batch_size=args.batch_size, batch_order=order, share_prompt_prefix=share,
                                  max_tokens_per_micro_batch=args.max_tokens_per_micro_batch)
        report[name] = epoch_positions(examples, training)
    report["positions_after_over_before"] = round(report["after"]["positions"] / report["before"]["positions"], 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
