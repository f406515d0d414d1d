"""The embedded reference policy: a small llama-type causal LM trained briefly on noisy labels.

Labels of the built-in task get one wrong digit with a probability that grows with the number
of carries. The model learns the right answer as its mode but samples wrong answers at about
the noise rate, so pi_ref is right only part of the time, per prompt spread from easy to hard,
and rarely never right: the regime where a reward tilt of pi_ref has something to find.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import ReferenceConfig, TaskConfig
from bolt_tasks.core.progress import track
from bolt_tasks.policy.character_tokenizer import character_tokenizer
from bolt_tasks.policy.modeling import save_policy_atomic
from bolt_tasks.stages import arithmetic
from bolt_tasks.stages.arithmetic import EMBEDDED_CONTEXT


def build_model(vocab_size: int, tokenizer, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=EMBEDDED_CONTEXT,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def _bootstrap_batches(reference: ReferenceConfig, split_seed: int, heldout_prompts: int, tokenizer):
    """Endless fixed-length batches `<bos>AB+CD=` + noisy answer + `<eos>` from training pairs."""
    _, train_pool = arithmetic.split_pairs(split_seed, heldout_prompts)
    rng = np.random.default_rng(reference.seed)
    while True:
        pairs = rng.choice(train_pool, size=reference.batch_size)
        texts = [
            arithmetic.prompt_text(p // 100, p % 100)
            + arithmetic.noisy_answer(p // 100, p % 100, reference.label_noise, rng)
            for p in pairs
        ]
        ids = [tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in texts]
        yield torch.tensor(ids)


def train_reference(
    reference: ReferenceConfig, split_seed: int, heldout_prompts: int, out_dir: str | Path
) -> None:
    """Build, train and save the reference policy to out_dir. Only
    the held-out split matters to it: bootstrap data never includes held-out prompts."""
    tokenizer = character_tokenizer()
    model = build_model(len(tokenizer), tokenizer, reference.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=reference.learning_rate, betas=(0.9, 0.98), weight_decay=0.01
    )
    warmup = min(100, reference.steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, reference.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    answer_length = 4  # three digits and EOS carry the loss; the prompt does not
    model.train()
    batches = _bootstrap_batches(reference, split_seed, heldout_prompts, tokenizer)
    for _ in track(range(reference.steps), reference.steps, "bootstrap reference policy"):
        ids = next(batches)
        logits = model(input_ids=ids[:, :-1]).logits[:, -answer_length:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, -answer_length:].reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    model.eval()
    save_policy_atomic(model, tokenizer, out_dir)


def embedded_reference_dir(runs: RunsDirectory, reference: ReferenceConfig, task: TaskConfig) -> Path:
    """runs/reference/embedded-<key>: one directory per bootstrap recipe and data split."""
    recipe = reference.model_dump_json() + f"|split seed={task.seed} heldout={task.heldout_prompts}"
    return runs.embedded_reference(hashlib.sha256(recipe.encode()).hexdigest()[:12])
