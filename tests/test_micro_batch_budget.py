"""The micro-batch token budget derived when training.max_tokens_per_micro_batch is unset: its
arithmetic by hand on Qwen2.5-1.5B's shape, and no bound on a CPU."""

import types

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.policy.micro_batch_budget import (
    activation_bytes_per_token,
    token_budget,
    with_token_budget,
)

# Qwen2.5-1.5B: 28 layers, hidden 1,536, intermediate 8,960, 12 query and 2 key-value heads of 128
QWEN_1_5B = types.SimpleNamespace(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                  num_attention_heads=12, num_key_value_heads=2, head_dim=128)


def test_activation_bytes_per_token_by_hand():
    # a layer: 2 bytes x (6 x 1,536 + 2 x 256 + 4 x 8,960) = 2 x 45,568 = 91,136
    assert activation_bytes_per_token(QWEN_1_5B, checkpointing=False) == 28 * 91_136 == 2_551_808
    # checkpointed: each layer's 2 x 1,536-byte input, and one layer live again: 86,016 + 91,136
    assert activation_bytes_per_token(QWEN_1_5B, checkpointing=True) == 177_152


def test_token_budget_by_hand():
    # 80 GB; 6 GB of float32 weights, all trainable: 6 + 3 x 6 GB + 2 x 4 bytes x 2^26 logits
    # = 24,536,870,912 bytes of state; half of the 55,463,129,088 left, per token
    assert token_budget(QWEN_1_5B, False, 6 * 10**9, 6 * 10**9, 80 * 10**9) == 27_731_564_544 // 2_551_808 == 10_867
    assert token_budget(QWEN_1_5B, True, 6 * 10**9, 6 * 10**9, 80 * 10**9) == 156_541
    # nothing left beside the state: one token per micro-batch (each sequence alone), not zero
    assert token_budget(QWEN_1_5B, False, 62 * 10**9, 6 * 10**9, 80 * 10**9) == 1


def test_a_cpu_or_a_set_budget_is_left_as_it_is(tiny_policy):
    model, _ = tiny_policy  # on the CPU
    unset = TrainingConfig()
    assert with_token_budget(unset, model) is unset
    assert unset.max_tokens_per_micro_batch is None
    given = TrainingConfig(max_tokens_per_micro_batch=512)
    assert with_token_budget(given, model) is given
