"""The decode loop's batch on a GPU, bounded by the KV cache its rows need (sampling/kv_budget.py):
arithmetic, since this machine has no GPU."""

from transformers import Qwen2Config

from bolt_tasks.sampling.kv_budget import bounded_rows, kv_bytes_per_position, largest_divisor_within

QWEN_1_5B = Qwen2Config(num_hidden_layers=28, hidden_size=1536, num_attention_heads=12,
                        num_key_value_heads=2, intermediate_size=8960, vocab_size=151936)


def test_the_review_figure_a_2048_row_float32_batch_needs_78_gb():
    per_position = kv_bytes_per_position(QWEN_1_5B, 4)
    assert per_position == 2 * 28 * 2 * 128 * 4 == 57344
    assert round(2048 * 662 * per_position / 1e9) == 78


def test_an_80_gb_card_bounds_the_batch_to_a_divisor_that_fits():
    rows = bounded_rows(2048, 662, QWEN_1_5B, 4, 80 * 10**9)
    assert rows == 1024  # 0.5 x 80 GB / 38 MB = 1,053 rows: the largest divisor of 2,048 within it
    assert rows * 662 * kv_bytes_per_position(QWEN_1_5B, 4) <= 0.5 * 80e9
    assert bounded_rows(2048, 662, QWEN_1_5B, 2, 80 * 10**9) == 2048  # bf16 fits whole


def test_nothing_is_bounded_on_a_cpu():
    assert bounded_rows(2048, 10**6, QWEN_1_5B, 4, None) == 2048


def test_largest_divisor_within():
    assert largest_divisor_within(1024, 1053) == 1024
    assert largest_divisor_within(96, 40) == 32
    assert largest_divisor_within(97, 40) == 1
