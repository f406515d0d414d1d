"""Everything about a round's inputs that can be checked before any work starts.

The CLI runs these checks in its own process before Prefect starts, so a bad input costs well
under a second and one line; the round flow runs them again before it claims its directory, for
runs started from the Prefect UI. Each failure is one BoltInputError naming file, row and
field. Nothing heavy is imported unless the reference is a model of the user's.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import ReferenceConfig, RoundConfig, TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.policy.character_tokenizer import character_backend
from bolt_tasks.stages.arithmetic import EMBEDDED_CONTEXT
from bolt_tasks.stages.prompt_files import prompt_field, read_prompts
from bolt_tasks.stages.verifier_registry import resolve_verifier

Encoder = Callable[[list[str]], list[list[int]]]


def reference_encoder(reference: ReferenceConfig) -> tuple[Encoder, dict, int | None]:
    """(encode a batch of prompts to token ids, the vocabulary, the context length in tokens
    or None) of the reference policy's tokenizer, encoding as the sampler does."""
    if reference.model is None:
        backend = character_backend()
        return (lambda texts: [e.ids for e in backend.encode_batch(texts)],
                backend.get_vocab(), EMBEDDED_CONTEXT)
    from transformers import AutoConfig, AutoTokenizer

    from bolt_tasks.policy.model_files import gguf_file, gguf_parsed_once
    from bolt_tasks.policy.modeling import load_tokenizer

    gguf = gguf_file(reference.model)
    try:
        if gguf is None:
            tokenizer = load_tokenizer(reference.model)
            config = AutoConfig.from_pretrained(reference.model)
        else:  # before its conversion: read both from the checkpoint itself
            with gguf_parsed_once():
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as error:  # transformers raises many types for a missing or broken model
        raise BoltInputError(f"field 'reference.model': cannot load {reference.model!r} "
                             f"({type(error).__name__}: {error})") from None
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return lambda texts: tokenizer(texts).input_ids, tokenizer.get_vocab(), context


def _unencodable(text: str, vocabulary: dict) -> str:
    """The characters of `text` a character-level vocabulary lacks, for the message."""
    missing = sorted({c for c in text if c not in vocabulary})
    return ", ".join(repr(c) for c in missing[:10]) if missing and len(missing) <= 10 else ""


def check_prompts_fit(
    prompts: pa.Table, sources: dict[str, str], encode: Encoder, vocabulary: dict,
    context: int | None, max_new_tokens: int, max_chars: int, task: TaskConfig = TaskConfig(),
) -> None:
    """Every prompt within max_chars, encodable by the tokenizer, and short enough that it and
    the longest response fit the model's context. Messages name the field of `task`'s files the
    prompt was read from."""
    ids, texts = prompts["prompt_id"].to_pylist(), prompts["prompt"].to_pylist()
    fields = {prompt_id: prompt_field(messages, task)
              for prompt_id, messages in zip(ids, prompts["messages"].to_pylist())}
    for prompt_id, text in zip(ids, texts):
        if len(text) > max_chars:
            raise BoltInputError(f"{sources[prompt_id]}: field '{fields[prompt_id]}' has {len(text):,} characters, "
                                 f"above task.max_prompt_chars={max_chars:,}")
    try:
        encoded = encode(texts)
    except Exception:  # one prompt the tokenizer cannot encode fails the batch: find it
        for prompt_id, text in zip(ids, texts):
            try:
                encode([text])
            except Exception as error:
                characters = _unencodable(text, vocabulary)
                detail = f"characters it cannot encode: {characters}" if characters else str(error)
                raise BoltInputError(f"{sources[prompt_id]}: field '{fields[prompt_id]}' cannot be tokenized "
                                     f"by the reference policy's tokenizer ({detail})") from None
        raise
    if context is None:
        return
    for prompt_id, tokens in zip(ids, encoded):
        if len(tokens) + max_new_tokens > context:
            raise BoltInputError(
                f"{sources[prompt_id]}: field '{fields[prompt_id]}' is {len(tokens):,} tokens; with up to "
                f"{max_new_tokens} new tokens it does not fit the reference model's context of "
                f"{context:,} tokens")


def check_round_inputs(config: RoundConfig, runs: RunsDirectory) -> None:
    """The pipeline name, the verifier, the prompt files and their fit to the model, then the
    runs directory (created here, once everything else is known to be good)."""
    runs.pipeline(config.pipeline)
    resolve_verifier(config.task.verifier_name)
    prompts, sources = read_prompts(config.task)
    encode, vocabulary, context = reference_encoder(config.reference)
    longest_response = max(config.sampling.max_new_tokens, config.evaluation.max_new_tokens)
    check_prompts_fit(prompts, sources, encode, vocabulary, context, longest_response,
                      config.task.max_prompt_chars, config.task)
    runs.create()
