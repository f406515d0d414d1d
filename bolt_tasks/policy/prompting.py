"""What a policy is actually given: a prompt rendered with the tokenizer's chat template (when it
has one and the task asks for it), after an optional system prompt, as token ids.

Every stage renders prompts here, and the rollouts and evaluation samples store the exact ids
and text, so sampling, reference scoring, training and evaluation see the same tokens.
"""

from __future__ import annotations

import json


def _conversation(prompt: str, messages: str | None, system_prompt: str | None) -> list[dict]:
    turns = json.loads(messages) if messages else [{"role": "user", "content": prompt}]
    if system_prompt and not any(turn["role"] == "system" for turn in turns):
        turns = [{"role": "system", "content": system_prompt}] + turns
    return turns


def uses_chat_template(tokenizer, chat_template: str) -> bool:
    return chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))


def render_prompts(
    tokenizer, prompts: list[str], chat_template: str = "auto", system_prompt: str | None = None,
    messages: list[str | None] | None = None, template_options: dict | None = None,
) -> tuple[list[str], list[list[int]]]:
    """(rendered text, token ids) per prompt. With the chat template: the conversation (the
    row's `messages` when it has them, else one user turn) with the generation prompt appended,
    the template reading `template_options` (e.g. enable_thinking=False); without one: the
    system prompt, a blank line and the prompt, encoded as plain text."""
    messages = messages or [None] * len(prompts)
    if uses_chat_template(tokenizer, chat_template):
        texts = [
            tokenizer.apply_chat_template(_conversation(prompt, rows, system_prompt),
                                          add_generation_prompt=True, tokenize=False,
                                          **(template_options or {}))
            for prompt, rows in zip(prompts, messages)
        ]
        # The template already holds the special tokens (BOS included, if the model wants one).
        return texts, [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    texts = [f"{system_prompt}\n\n{prompt}" if system_prompt else prompt for prompt in prompts]
    return texts, [tokenizer(text).input_ids for text in texts]
