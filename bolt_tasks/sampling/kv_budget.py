"""How many rows the transformers decode loop runs at once on a GPU: as many as half the card's
memory holds the KV cache of.

A row's cache is 2 (keys, values) x layers x key-value heads x head size x its positions, in the
model's dtype: Qwen2.5-1.5B in float32 at 662 positions is 38 MB, so the default evaluation batch
of 2,048 rows would need 78 GB. The bound is taken from the card's total memory, not its free
memory, so the same configuration on the same card always decodes in the same batches (the bits
of a log-prob depend on its batch). A bounded batch is the largest divisor of the configured one
that fits, so decode batches still start at the configured boundaries, where prompt shards start.
On a CPU nothing is bounded.
"""

from __future__ import annotations

from bolt_tasks.policy.modeling import key_value_width

# The share of the card's memory the decode loop's KV cache may take; the weights, the logits
# and the cache's growth by concatenation take the rest.
KV_MEMORY_SHARE = 0.5


def kv_bytes_per_position(config, element_size: int) -> int:
    return 2 * config.num_hidden_layers * key_value_width(config) * element_size


def largest_divisor_within(rows: int, limit: int) -> int:
    best = 1
    for candidate in range(1, int(rows ** 0.5) + 1):
        if rows % candidate == 0:
            for divisor in (candidate, rows // candidate):
                if best < divisor <= limit:
                    best = divisor
    return best


def bounded_rows(rows: int, positions: int, config, element_size: int, memory_bytes: int | None) -> int:
    """`rows` per decode batch, or fewer when their KV cache at `positions` would pass
    KV_MEMORY_SHARE of `memory_bytes` (None: not bounded)."""
    if memory_bytes is None:
        return rows
    per_row = kv_bytes_per_position(config, element_size) * positions
    limit = max(1, int(KV_MEMORY_SHARE * memory_bytes // per_row))
    return rows if rows <= limit else largest_divisor_within(rows, limit)


def device_memory(model) -> int | None:
    """The total memory of the CUDA device the model is on (None on a CPU)."""
    import torch

    device = next(model.parameters()).device
    return torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
