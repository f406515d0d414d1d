"""Loading causal LMs and their tokenizers, and the embedded model's character tokenizer."""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging

# BOLT reports its own progress per stage; per-checkpoint load/save bars would drown it.
transformers_logging.disable_progress_bar()

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"]
CHARACTERS = list(string.digits) + list("+-*=") + [" "] + list(string.ascii_lowercase)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def character_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; BOS prepended; decoding joins characters with nothing between.

    Saved with save_pretrained it reloads through AutoTokenizer. The model beside it must be
    llama-type: a qwen2 config makes transformers swap in Qwen2Tokenizer, which drops spaces.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def load_tokenizer(model_path: str | Path):
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(model_path: str | Path, device: torch.device | None = None):
    """(model, tokenizer) in eval mode, float32 so log-probs are exact to 1e-4."""
    device = device or pick_device()
    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    model.to(device).eval()
    return model, tokenizer


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    return [tokenizer(p).input_ids for p in prompts]


def save_policy_atomic(model, tokenizer, out_dir: str | Path) -> None:
    """save_pretrained into a temp directory, then rename: no half-written checkpoint."""
    out_dir = Path(out_dir)
    temp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    model.save_pretrained(temp)
    tokenizer.save_pretrained(temp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(temp, out_dir)
