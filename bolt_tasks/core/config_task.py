"""What a round's task is: where its prompts come from, how they are presented to the policy,
and how responses are checked. Part of the round's configuration (core/config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The ranges inside which every log-weight stays a finite float64 (|r/beta|, |eta*r| <= 1e12),
# with room to spare: weights are normalised in log space, so only these products must be finite.
MAX_ABS_REWARD = 1e6
BETA_RANGE = (1e-6, 1e6)
BUILTIN_PROMPTS = 10_000  # the built-in task's distinct prompts (two-digit addition)
REASONING_GYM = "reasoning_gym:"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskConfig(_Frozen):
    """Where prompts come from, how they are presented and how answers are checked.

    Without prompt files or another source: the built-in task, two-digit addition 'AB+CD=' with
    a 3-digit answer.
    """

    source: str = Field(
        "builtin",
        description="builtin: two-digit addition. reasoning_gym:NAME: a reasoning-gym generator "
        "(e.g. reasoning_gym:gsm_symbolic; the `real` extra), train_prompts and heldout_prompts "
        "of it from `seed`, checked by its own scorer. Prompt files (prompts_file, "
        "heldout_file) replace either.",
    )
    source_options: dict[str, Any] = Field(
        {}, description="reasoning_gym: keyword arguments of the generator (its difficulty knobs).",
    )
    train_prompts: int = Field(
        1000, ge=1, description="Number of training prompts the round samples responses for."
    )
    heldout_prompts: int = Field(
        512, ge=1, description="Number of held-out prompts used only for evaluation."
    )
    seed: int = Field(0, description="Seed of the train/held-out split and prompt draw.")
    prompts_file: Path | None = Field(
        None,
        description="Your own training prompts: a JSONL or Parquet file, a folder of Parquet "
        "shards, or a Hugging Face datasets folder (save_to_disk). Rows hold a prompt and an "
        "answer (see prompt_field, answer_field, messages_field) and an optional id.",
    )
    heldout_file: Path | None = Field(
        None,
        description="Your own held-out prompts (same forms). Required with prompts_file.",
    )
    prompt_field: str = Field("prompt", description="Column of the prompt text in prompt files.")
    answer_field: str = Field(
        "answer", description="Column of the reference answer, or of a worked solution whose final "
        "value answer_format extracts.",
    )
    messages_field: str = Field(
        "messages", description="Column of chat-format rows ([{role, content}, ...]): the turns "
        "up to the last user turn are the prompt; a last assistant turn is the answer when the "
        "row has no answer column.",
    )
    answer_format: Literal["plain", "gsm8k", "boxed", "auto"] = Field(
        "plain",
        description="How to read the answer column: plain (as is), gsm8k (the number after "
        "'####'), boxed (the last \\boxed{...}, MATH style), auto (gsm8k, else boxed, else plain).",
    )
    system_prompt: str | None = Field(
        None, description="A system prompt put before every prompt (a system turn under a chat "
        "template, else the text and a blank line).",
    )
    chat_template: Literal["auto", "none"] = Field(
        "auto", description="auto: render prompts with the tokenizer's chat template and its "
        "generation prompt when the tokenizer has one; none: plain text.",
    )
    chat_template_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments the chat template reads, passed to apply_chat_template, "
        'e.g. {"enable_thinking": false} for Qwen3 (its template thinks unless told not to). '
        "Part of the configuration, hence of every stage's cache key.",
    )
    verifier: str | None = Field(
        None,
        description="Verifier name in the registry (arithmetic, exact_match, math, gsm8k, "
        "reasoning_gym) or 'module:function' for your own callable f(prompt, answer, response, "
        "finish_reason) -> float. Empty: the source's own (arithmetic for the built-in task, "
        "reasoning_gym for reasoning_gym:NAME, exact_match for prompt files).",
    )
    verifier_fallback_reward: float = Field(
        0.0, ge=-MAX_ABS_REWARD, le=MAX_ABS_REWARD,
        description="Reward recorded for a response the verifier could not score (it raised, "
        "timed out, died or returned something that is not a finite number); the error text is "
        "kept in rewards.error, and such a response never counts as a success.",
    )
    verifier_timeout_s: float = Field(
        10.0, gt=0,
        description="Time limit per response for a 'module:function' verifier; past it the "
        "response is recorded as an error and the verifier's worker process is replaced.",
    )
    verifier_workers: int = Field(
        2, ge=1, description="Worker processes that run a 'module:function' verifier.",
    )
    max_verifier_error_share: float = Field(
        0.01, ge=0, le=1,
        description="The round stops, naming the first error, when a larger share of responses "
        "could not be scored; below it the errors are counted on screen and in MLflow.",
    )
    max_prompt_chars: int = Field(
        20_000, ge=1,
        description="Longest prompt accepted, in characters; prompts must also fit the reference "
        "model's context with room for the longest response.",
    )

    @property
    def verifier_name(self) -> str:
        """The verifier that runs: the configured one, else the source's own."""
        if self.verifier:
            return self.verifier
        if self.prompts_file is not None:
            return "exact_match"
        return "reasoning_gym" if self.source.startswith(REASONING_GYM) else "arithmetic"

    @model_validator(mode="after")
    def _files_come_in_pairs(self) -> "TaskConfig":
        if (self.prompts_file is None) != (self.heldout_file is None):
            raise ValueError("prompts_file and heldout_file must be given together")
        if self.source != "builtin" and not self.source.startswith(REASONING_GYM):
            raise ValueError(f"source must be 'builtin' or '{REASONING_GYM}NAME'")
        if self.source == "builtin" and self.prompts_file is None and self.train_prompts + self.heldout_prompts > BUILTIN_PROMPTS:
            raise ValueError(
                f"the built-in task has {BUILTIN_PROMPTS:,} prompts: train_prompts "
                f"({self.train_prompts:,}) + heldout_prompts ({self.heldout_prompts:,}) must not "
                "exceed it")
        return self
