"""The built-in verifiable task: two-digit addition with a fixed-length answer.

Prompt `AB+CD=` (operands 00-99, zero padded), answer the 3-digit zero-padded sum
(`07+85=` -> `092`). Difficulty is the number of carries (0, 1 or 2). The split into
held-out and training prompts comes from one seeded permutation of all 10,000 pairs, so the
two never overlap and the same seed always gives the same split.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bolt_tasks.core.config import BUILTIN_PROMPTS

ALL_PAIRS = BUILTIN_PROMPTS
# The embedded policy's context, in tokens: a prompt is 7 with BOS, an answer 4 with EOS.
EMBEDDED_CONTEXT = 64


def prompt_text(a: int, b: int) -> str:
    return f"{a:02d}+{b:02d}="


def answer_text(a: int, b: int) -> str:
    return f"{a + b:03d}"


def carries(a: int, b: int) -> int:
    units_carry = (a % 10 + b % 10) >= 10
    tens_carry = (a // 10 + b // 10 + units_carry) >= 10
    return int(units_carry) + int(tens_carry)


def split_pairs(seed: int, heldout_prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (heldout, train) pair indices (a*100+b) from one seeded permutation."""
    if heldout_prompts >= ALL_PAIRS:
        raise ValueError(f"heldout_prompts must be < {ALL_PAIRS}, got {heldout_prompts}")
    order = np.random.default_rng(seed).permutation(ALL_PAIRS)
    return order[:heldout_prompts], order[heldout_prompts:]


def prompts_table(seed: int, train_prompts: int, heldout_prompts: int) -> pa.Table:
    heldout, train_pool = split_pairs(seed, heldout_prompts)
    if train_prompts > len(train_pool):
        raise ValueError(f"train_prompts must be <= {len(train_pool)}, got {train_prompts}")
    train = np.random.default_rng(seed + 1).choice(train_pool, size=train_prompts, replace=False)
    rows = [(int(i), "heldout") for i in heldout] + [(int(i), "train") for i in train]
    return pa.table(
        {
            "prompt_id": [f"add-{i // 100:02d}+{i % 100:02d}" for i, _ in rows],
            "prompt": [prompt_text(i // 100, i % 100) for i, _ in rows],
            "answer": [answer_text(i // 100, i % 100) for i, _ in rows],
            "split": [split for _, split in rows],
            "difficulty": pa.array([carries(i // 100, i % 100) for i, _ in rows], pa.int32()),
            "messages": pa.nulls(len(rows), pa.string()),
            "metadata": pa.nulls(len(rows), pa.string()),
        }
    )


def noisy_answer(a: int, b: int, noise_by_carries: tuple[float, float, float], rng) -> str:
    """The bootstrap label: with a difficulty-dependent probability, one digit is wrong.

    This makes the reference policy right as its mode but wrong in a share of its samples,
    which is what a reward tilt can fix (docs/DESIGN.md, "The built-in task").
    """
    answer = list(answer_text(a, b))
    if rng.random() < noise_by_carries[carries(a, b)]:
        position = int(rng.integers(len(answer)))
        answer[position] = str((int(answer[position]) + int(rng.integers(1, 10))) % 10)
    return "".join(answer)
