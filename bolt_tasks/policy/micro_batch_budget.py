"""The tokens per micro-batch when `training.max_tokens_per_micro_batch` is unset: on a GPU, as
many as half of the memory left beside the training state holds the activations of; on a CPU,
no bound (one micro-batch per optimizer step, as before: host memory holds the default batch's
activations many times over).

The training state is this process's trainable parameters' float32 gradients and AdamW's two
moments (3 x 4 bytes each, of the local shard under FSDP) plus the weights themselves. The
activations a token leaves for the backward pass are an estimate from the model's shape, per
decoder layer, in the 2-byte autocast dtype: the layer's input, the normed input, queries, keys
and values, the attention output and the residual sum (6 hidden + 2 key-value widths), and the
MLP's gate, up, activation and product (4 intermediate widths); cf. Korthikanti et al. 2022
(arXiv:2205.05198), section 4.1, without dropout masks or attention scores (SDPA's kernels keep
neither). With gradient checkpointing a layer keeps only its input, and one layer's activations
are live again while it is recomputed. The float32 logits of a log-prob chunk
(policy/logprobs.py's LOGIT_BUDGET, and their gradient) are reserved besides.

Like the decode loop's bound (sampling/kv_budget.py), it is taken from the card's total memory,
not its free memory: the same configuration on the same card always trains in the same
micro-batches, whose order of accumulation decides the fit's last bits.
"""

from __future__ import annotations

import torch

from bolt_tasks.policy.logprobs import LOGIT_BUDGET
from bolt_tasks.policy.modeling import key_value_width

ACTIVATION_MEMORY_SHARE = 0.5
AUTOCAST_BYTES = 2


def activation_bytes_per_token(config, checkpointing: bool) -> int:
    hidden, layers = config.hidden_size, config.num_hidden_layers
    layer = AUTOCAST_BYTES * (6 * hidden + 2 * key_value_width(config) + 4 * config.intermediate_size)
    if checkpointing:
        return layers * AUTOCAST_BYTES * hidden + layer
    return layers * layer


def token_budget(config, checkpointing: bool, weight_bytes: int, trainable_bytes_float32: int,
                 memory_bytes: int) -> int:
    """Tokens whose activations fit ACTIVATION_MEMORY_SHARE of what `memory_bytes` leaves beside
    the weights, 3 x the trainable float32 bytes (gradients, two moments) and the logit chunks."""
    state = weight_bytes + 3 * trainable_bytes_float32 + 2 * 4 * LOGIT_BUDGET
    left = max(0, memory_bytes - state)
    return max(1, int(ACTIVATION_MEMORY_SHARE * left) // activation_bytes_per_token(config, checkpointing))


def _local(parameter) -> torch.Tensor:
    return parameter.to_local() if hasattr(parameter, "to_local") else parameter  # FSDP2 shards


def derived_token_budget(policy, checkpointing: bool) -> int | None:
    """The budget for `policy` (unwrapped: its own config) on its device; None on a CPU."""
    parameters = list(policy.parameters())
    device = parameters[0].device
    if device.type != "cuda":
        return None
    config = policy.config
    weights = sum(_local(p).numel() * _local(p).element_size() for p in parameters)
    trainable = sum(_local(p).numel() * 4 for p in parameters if p.requires_grad)
    memory = torch.cuda.get_device_properties(device).total_memory
    return token_budget(config, checkpointing, weights, trainable, memory)


def with_token_budget(training, policy):
    """`training` with max_tokens_per_micro_batch derived when it is unset and bounded here."""
    if training.max_tokens_per_micro_batch is not None:
        return training
    budget = derived_token_budget(policy, training.gradient_checkpointing)
    return training if budget is None else training.model_copy(
        update={"max_tokens_per_micro_batch": budget})
