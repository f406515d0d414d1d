"""Dealing an optimizer batch to training processes by token count (policy/rank_shares.py)."""

import pytest

from bolt_tasks.core.config import TrainingConfig, validate_round_config
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.policy.rank_shares import positions, rank_share


def batch_of(widths, samples=8, prompt_length=6):
    return [([group] * prompt_length, [7] * width, 1.0) for group, width in enumerate(widths)
            for _ in range(samples)]


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
def test_every_example_goes_to_exactly_one_rank_in_order(share, size):
    batch = batch_of([3, 5, 9, 14])
    shares = [rank_share(batch, rank, size, share) for rank in range(size)]
    assert [example for mine in shares for example in mine] == batch  # contiguous, all, once


@pytest.mark.parametrize("size", [2, 4, 8])
def test_ranks_are_within_an_example_of_the_mean(size):
    batch = batch_of([3, 5, 9, 14])
    counts = [positions(rank_share(batch, rank, size, False), False) for rank in range(size)]
    widest = max(len(p) + len(r) for p, r, _ in batch)
    assert max(counts) - sum(counts) / size <= widest
    assert min(counts) > 0  # 4 groups on 8 ranks: every rank still has work


def test_whole_groups_round_robin_would_idle_half_of_eight_ranks():
    """The defect this replaces: 4 groups dealt whole to 8 ranks leave 4 with nothing."""
    groups = [batch_of([w]) for w in (3, 5, 9, 14)]
    whole = [[e for g in groups[rank::8] for e in g] for rank in range(8)]
    assert sum(1 for mine in whole if not mine) == 4
    batch = [e for g in groups for e in g]
    assert all(rank_share(batch, rank, 8, True) for rank in range(8))


def test_shared_positions_count_each_prompt_once_per_group():
    batch = batch_of([3, 5], samples=2, prompt_length=6)
    assert positions(batch, share=True) == (6 + 3 + 3) + (6 + 5 + 5)
    assert positions(batch, share=False) == 2 * (6 + 3) + 2 * (6 + 5)


def test_a_batch_smaller_than_the_process_count_is_refused_with_the_numbers():
    with pytest.raises(BoltInputError, match=r"training.batch_size 4 is below the 8 training processes"):
        validate_round_config({"training": {"launcher": "torchrun", "nproc_per_node": 8, "batch_size": 4}})
    assert TrainingConfig(launcher="torchrun", nproc_per_node=8, batch_size=8).batch_size == 8
