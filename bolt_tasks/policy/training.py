"""Weighted-SFT trainer: the weighted maximum-likelihood fit of the new policy.

    L(theta) = - sum_i w_i * log pi_theta(y_i | x_i) / (number of samples in the batch)

log pi_theta(y|x) is the SUM of the response tokens' log-probs: prompt tokens carry no loss
and no sequence is divided by its own length (that would fit a different policy). With the
BOLT weights w = exp(r/beta)/Zhat(x) this is the forward-KL projection onto pi* (docs/DESIGN.md section 1).
The forward pass runs under bf16 autocast on a CUDA GPU, and where training.autocast asks for it
also on a CPU that computes bf16 natively; log-softmax is taken in float32.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import torch

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.errors import NonFiniteError
from bolt_tasks.core.progress import track
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import TRAIN_LOG
from bolt_tasks.policy.logprobs import packed_logprob_sums, pad_prompt_response, response_logprob_sums
from bolt_tasks.policy.shared_prefix import (
    Group,
    PackedGroups,
    group_by_prompt,
    pack_for,
    row_width,
    shares_prefixes,
    split_wide,
)
from bolt_tasks.policy.shared_prefix import micro_batches as packed_micro_batches
from bolt_tasks.policy.micro_batch_budget import with_token_budget
from bolt_tasks.policy.modeling import load_policy, save_policy_atomic
from bolt_tasks.policy.rank_shares import positions, rank_share


class ResponseLogprobs(torch.nn.Module):
    """The policy as a module whose forward gives each sequence's response log-prob sum: what
    DDP and FSDP wrap, since their hooks (gradient sync, parameter gathering) run on the
    wrapped module's own forward, and the chunked log-probs call the decoder and head apart."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, *batch):
        """`batch`: (ids, attention, response_mask) of padded sequences, or one PackedGroups."""
        if isinstance(batch[0], PackedGroups):
            return packed_logprob_sums(self.policy, batch[0])
        return response_logprob_sums(self.policy, *batch)


def unwrapped(model):
    """The policy inside a DDP wrapper and its ResponseLogprobs, if any."""
    model = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return model.policy if isinstance(model, ResponseLogprobs) else model


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (Linux's cpuinfo flags; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocasts(device: torch.device, setting: str) -> bool:
    """Whether training.autocast `setting` runs the forward pass in bf16 on `device`."""
    if device.type == "cuda":
        return setting != "never"
    return device.type == "cpu" and setting == "native" and cpu_computes_bf16()


def _nll(model, batch: tuple, weights: torch.Tensor, batch_size: int, autocast: str) -> torch.Tensor:
    device = next(model.parameters()).device
    context = (torch.autocast(device.type, dtype=torch.bfloat16) if autocasts(device, autocast)
               else nullcontext())
    wrapped = isinstance(model, (ResponseLogprobs, torch.nn.parallel.DistributedDataParallel))
    scorer = model if wrapped else ResponseLogprobs(model)
    with context:
        sequence_logprobs = scorer(*batch)
    return -(weights.to(device) * sequence_logprobs).sum() / batch_size


def weighted_nll(
    model, prompts, responses, weights: torch.Tensor, pad_id: int, batch_size: int | None = None,
    autocast: str = "cuda",
) -> torch.Tensor:
    """The loss of these sequences: -(sum_i w_i * sum_t log pi(y_it)) / batch_size, where
    batch_size is the whole optimizer batch's (these sequences', by default). `model`: the
    policy, or its ResponseLogprobs (wrapped or not). `autocast`: as training.autocast."""
    device = next(model.parameters()).device
    batch = pad_prompt_response(prompts, responses, pad_id, device)
    return _nll(model, batch, weights, batch_size or len(prompts), autocast)


def weighted_group_nll(model, groups: list[Group], weights: list[float], pad_id: int,
                       batch_size: int, autocast: str = "cuda") -> torch.Tensor:
    """weighted_nll of the groups' sequences, each prompt computed once (policy/shared_prefix.py);
    `weights`: one per sequence, in the groups' order."""
    packed = pack_for(unwrapped(model), groups, pad_id)
    return _nll(model, (packed,), torch.tensor(weights, dtype=torch.float32), batch_size, autocast)


def micro_batches(batch: list, max_tokens: int | None) -> list[list]:
    """Runs of (prompt, response, weight) examples, longest first so that a run's sequences
    have similar lengths, whose padded size (count x longest sequence) stays within max_tokens;
    an example longer than that runs alone."""
    if max_tokens is None:
        return [batch]
    runs, current, longest = [], [], 0
    for example in sorted(batch, key=lambda e: len(e[0]) + len(e[1]), reverse=True):
        length = len(example[0]) + len(example[1])
        if current and (len(current) + 1) * max(longest, length) > max_tokens:
            runs.append(current)
            current, longest = [], 0
        current.append(example)
        longest = max(longest, length)
    return runs + [current] if current else runs


def shared_micro_batches(batch: list, max_tokens: int | None) -> list[tuple[list[Group], list[float]]]:
    """A batch of (prompt, response, weight) examples as packed micro-batches: the examples of
    each prompt in one group (split where one would pass max_tokens), groups of similar width
    together, each run within max_tokens positions; with the weights in the groups' order."""
    prompts, responses, weights = zip(*batch)
    budget = max_tokens or sum(len(p) + len(r) for p, r in zip(prompts, responses))
    widest = max(len(p) + len(r) for p, r in zip(prompts, responses))
    groups = [part for group in group_by_prompt(list(prompts), list(responses))
              for part in split_wide(group, min(budget, row_width(widest)))]
    return [(run, [weights[i] for group in run for i in group.indices])
            for run in packed_micro_batches(groups, budget)]


def batch_order(examples: list, training: TrainingConfig, generator: torch.Generator) -> list[int]:
    """One epoch's order of the examples: shuffled one by one, or (prompt_groups) the prompts
    shuffled and each prompt's examples kept together in their order."""
    if training.batch_order == "rollouts":
        return torch.randperm(len(examples), generator=generator).tolist()
    members: dict[tuple[int, ...], list[int]] = {}
    for index, example in enumerate(examples):
        members.setdefault(tuple(example[0]), []).append(index)
    groups = list(members.values())
    return [i for g in torch.randperm(len(groups), generator=generator).tolist() for i in groups[g]]


def weighted_examples(rollouts: pa.Table, weights: pa.Table):
    """(prompt ids, response ids, weight) per rollout the weights keep (weights.kept: a dropped
    zero-information group's rows are not trained on; a table without the column keeps every
    row), joined on (prompt_id, sample_idx); the prompt ids are exactly those the sampler was
    given (rollouts.prompt_token_ids)."""
    kept = (weights["kept"].to_pylist() if "kept" in weights.column_names
            else [True] * weights.num_rows)
    weight_of = {
        (p, s): (w, keep)
        for p, s, w, keep in zip(
            weights["prompt_id"].to_pylist(), weights["sample_idx"].to_pylist(),
            weights["weight"].to_pylist(), kept,
        )
    }
    keys = zip(rollouts["prompt_id"].to_pylist(), rollouts["sample_idx"].to_pylist())
    pairs = zip(rollouts["prompt_token_ids"].to_pylist(), rollouts["response_token_ids"].to_pylist())
    examples = [(prompt, response, *weight_of[key]) for key, (prompt, response) in zip(keys, pairs)]
    return [(prompt, response, weight) for prompt, response, weight, keep in examples if keep]


def prepare_model(start_model: str, training: TrainingConfig, device: torch.device | None = None):
    """(model in train mode, tokenizer): with LoRA adapters when configured, and gradient
    checkpointing when asked for."""
    model, tokenizer = load_policy(start_model, device)
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if training.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = training.lora
        model = get_peft_model(model, LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    model.train()
    return model, tokenizer


def finished_model(model, checkpoint_dtype: str = "float32"):
    """The model to save: adapters merged into the base weights (an ordinary checkpoint), in
    the checkpoint dtype."""
    model.eval()
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.config.use_cache = True
    return model.to(getattr(torch, checkpoint_dtype))


@dataclass
class Replicas:
    """This process's place among the training processes (one, inline): its rank, their count,
    and how a number they each hold is combined (policy/distributed.py: across processes)."""

    rank: int = 0
    size: int = 1

    def total(self, value: float) -> float:
        return value

    def most(self, value: int) -> int:
        return value


def fit(model, pad_id: int, examples: list, training: TrainingConfig,
        replicas: Replicas = Replicas()) -> dict[str, list]:
    """Weighted maximum likelihood over `examples`, in place; returns the loss log.

    Every process sees the same batches (the same seeded order) and fits its share of each, an
    equal share of the batch's token positions (policy/rank_shares.py). Each micro-batch's loss
    is normalised by the whole batch's size and multiplied by the process count, which the
    gradient average (DDP, FSDP) divides out again: the gradient is the one-process gradient,
    whatever the count. Processes with fewer micro-batches add zero-weight ones, since every
    process must run as many backward passes as the others (their collectives pair up); the
    gradients are reduced once per step, on the last. The log's rank_balance is the busiest
    process's positions over the mean (1 inline).
    """
    training = with_token_budget(training, unwrapped(model))  # unset: bounded on a GPU
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        trained, lr=training.learning_rate, betas=(0.9, 0.99), weight_decay=training.weight_decay,
    )
    generator = torch.Generator().manual_seed(training.seed)
    steps_per_epoch = -(-len(examples) // training.batch_size)
    total = steps_per_epoch * training.epochs

    def learning_rate_factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / max(1, training.warmup_steps))
        if training.schedule == "constant" or step < training.warmup_steps:
            return warmup
        progress = (step - training.warmup_steps) / max(1, total - training.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
    log = {name: [] for name in TRAIN_LOG.schema.names}

    def batches():
        for epoch in range(training.epochs):
            order = batch_order(examples, training, generator)
            for first in range(0, len(order), training.batch_size):
                yield epoch, [examples[i] for i in order[first : first + training.batch_size]]

    widest = max((len(p) + len(r) for p, r, _ in examples), default=0)
    share = training.share_prompt_prefix and shares_prefixes(
        unwrapped(model), training.max_tokens_per_micro_batch or training.batch_size * widest)
    steps = track(batches(), total, "weighted SFT") if replicas.rank == 0 else batches()
    for step, (epoch, batch) in enumerate(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        losses, mine = micro_batch_losses(model, batch, share, training, replicas, pad_id)
        for index, part in enumerate(losses):
            with gradient_sync(model, sync=index == len(losses) - 1):
                part_loss = part()
                (part_loss * replicas.size).backward()
            loss += part_loss.item()
        loss = replicas.total(loss)
        rank_balance = replicas.most(mine) * replicas.size / max(1.0, replicas.total(float(mine)))
        if not math.isfinite(loss):
            raise NonFiniteError(f"weighted SFT: the loss is {loss} at step {step} (epoch "
                                 f"{epoch}); nothing was saved")
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, training.max_grad_norm)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        for name, value in zip(
            TRAIN_LOG.schema.names,
            (step, epoch, loss, grad_norm.item(), learning_rate, rank_balance)
        ):
            log[name].append(value)
    return log


def micro_batch_losses(model, batch: list, share: bool, training: TrainingConfig,
                       replicas: Replicas, pad_id: int) -> tuple[list, int]:
    """This process's micro-batches of one optimizer batch, as functions computing their losses
    (each normalised by the whole batch's size), and the positions they cover: its share of the
    batch by token count (policy/rank_shares.py), then zero-weight micro-batches up to the most
    any process runs."""
    mine = rank_share(batch, replicas.rank, replicas.size, share)
    filler = [(batch[0][0], batch[0][1], 0.0)]
    if share:
        parts = shared_micro_batches(mine, training.max_tokens_per_micro_batch) if mine else []
        parts += shared_micro_batches(filler, None) * (replicas.most(len(parts)) - len(parts))
        losses = [partial(weighted_group_nll, model, part_groups, part_weights, pad_id, len(batch),
                          training.autocast) for part_groups, part_weights in parts]
        return losses, positions(mine, share)
    parts = micro_batches(mine, training.max_tokens_per_micro_batch) if mine else []
    parts += [filler] * (replicas.most(len(parts)) - len(parts))
    losses = []
    for part in parts:
        prompt_ids, response_ids, part_weights = zip(*part)
        losses.append(partial(weighted_nll, model, list(prompt_ids), list(response_ids),
                              torch.tensor(part_weights, dtype=torch.float32), pad_id, len(batch),
                              training.autocast))
    return losses, positions(mine, share)


@contextmanager
def gradient_sync(model, sync: bool):
    """Gradients are reduced across processes on an optimizer step's last micro-batch only: one
    reduction per step instead of one per micro-batch (DDP's no_sync, FSDP2's
    set_requires_gradient_sync). Every process runs as many micro-batches, so their last ones
    pair up. Inline, a no-op."""
    if sync:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def check_finite(model) -> None:
    broken = [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]
    if broken:
        raise NonFiniteError(f"weighted SFT: {len(broken)} parameter tensors hold NaN or inf after "
                             f"training (first: {broken[0]}); nothing was saved")


def train_policy(
    rollouts: pa.Table, weights: pa.Table, start_model: str, training: TrainingConfig,
    out_dir: str | Path, log_path: str | Path,
) -> TableRef:
    """Fit from start_model on the weighted rollouts in this process; save the policy; return
    the loss log."""
    model, tokenizer = prepare_model(start_model, training)
    log = fit(model, tokenizer.pad_token_id, weighted_examples(rollouts, weights), training)
    model = finished_model(model, training.checkpoint_dtype)
    check_finite(model)
    save_policy_atomic(model, tokenizer, out_dir)
    return TRAIN_LOG.write(pa.table(log, schema=TRAIN_LOG.schema), log_path)
