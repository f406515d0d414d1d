"""Random streams per prompt, never per batch or shard: a prompt's samples are the same whatever
else is sampled beside it, so a round split into shards writes the rows a single pass would.

Response j of a prompt whose seed is s draws from seed s + j (vLLM's own convention for the n
samples of a seeded request), so both backends derive their streams the same way.
"""

from __future__ import annotations

import hashlib


def prompt_seed(seed: int, prompt_key: str) -> int:
    """The seed of one prompt's requests, from the run's seed and the prompt's id alone."""
    digest = hashlib.blake2b(f"{seed}/{prompt_key}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def prompt_seeds(seed: int, prompt_keys: list[str]) -> list[int]:
    return [prompt_seed(seed, str(key)) for key in prompt_keys]


def positional_seeds(seed: int, count: int) -> list[int]:
    """Seeds of `count` prompts known only by their position (no prompt ids at hand)."""
    return prompt_seeds(seed, [str(i) for i in range(count)])


def row_seeds(seeds: list[int], samples_per_prompt: int) -> list[int]:
    """Seeds of the prompt-major rows: samples_per_prompt per prompt, s + 0 .. s + n - 1."""
    return [seed + j for seed in seeds for j in range(samples_per_prompt)]
