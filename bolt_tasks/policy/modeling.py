"""Loading and saving causal LMs and their tokenizers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from bolt_tasks.core.storage import FILE_MODE

# BOLT reports its own progress per stage; per-checkpoint load/save bars would drown it.
transformers_logging.disable_progress_bar()

def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def key_value_width(config) -> int:
    """Key-value heads x head size of a transformers config: one token's keys (or values) in a
    layer, grouped-query attention included."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return (getattr(config, "num_key_value_heads", None) or heads) * head_dim


def load_tokenizer(model_path: str | Path):
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(model_path: str | Path, device: torch.device | None = None,
                dtype: torch.dtype = torch.float32):
    """(model, tokenizer) in eval mode, float32 by default so log-probs are exact to 1e-4."""
    device = device or pick_device()
    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=dtype)
    model.to(device).eval()
    return model, tokenizer


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    return [tokenizer(p).input_ids for p in prompts]


def save_policy_atomic(model, tokenizer, out_dir: str | Path) -> None:
    """save_pretrained into a temp directory, then rename: no half-written checkpoint."""
    out_dir = Path(out_dir)
    temp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
    except Exception as error:  # a full disk raises OSError, or safetensors' own error type
        shutil.rmtree(temp, ignore_errors=True)
        raise OSError(f"{out_dir}: cannot save the policy ({type(error).__name__}: {error})") from error
    for file in temp.rglob("*"):  # some writers make owner-only files; a checkpoint is shared
        if file.is_file():
            file.chmod(FILE_MODE)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(temp, out_dir)


def discard_fit(out_dir: str | Path, log_path: str | Path) -> None:
    """A failed distributed fit's outputs, whole or partial (rank 0 may have saved before another
    rank failed), are not the stage's: remove them, so nothing of it is left for a later stage."""
    out_dir = Path(out_dir)
    for directory in (out_dir, out_dir.with_name(f".{out_dir.name}.tmp")):
        shutil.rmtree(directory, ignore_errors=True)
    Path(log_path).unlink(missing_ok=True)
