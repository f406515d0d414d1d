"""Prompts from a reasoning-gym generator (task.source = reasoning_gym:NAME, the `real` extra).

The generator is seeded with task.seed and asked for heldout_prompts + train_prompts entries;
the first heldout_prompts are held out. Each prompt keeps its whole entry in `metadata`, so the
reasoning_gym verifier scores with the generator's own score_answer.
"""

from __future__ import annotations

import json

from bolt_tasks.core.errors import BoltInputError


def generated_rows(name: str, options: dict, seed: int, train: int, heldout: int) -> list[dict]:
    try:
        import reasoning_gym
    except ImportError:
        raise BoltInputError("field 'task.source': reasoning-gym is not installed "
                             "(`bash scripts/install.sh --real`)") from None
    try:
        dataset = reasoning_gym.create_dataset(name, seed=seed, size=heldout + train, **options)
    except Exception as error:  # an unknown name or a bad option: the generator's own words
        raise BoltInputError(f"field 'task.source': reasoning_gym:{name} with options {options} "
                             f"({type(error).__name__}: {error})") from None
    rows, seen = [], set()
    for index in range(heldout + train):
        entry = dataset[index]
        if entry["question"] in seen:  # a small generator repeats itself
            continue
        seen.add(entry["question"])
        split = "heldout" if index < heldout else "train"
        rows.append({
            "prompt_id": f"{name}-{index}", "prompt": entry["question"], "answer": str(entry["answer"]),
            "split": split, "difficulty": None, "messages": None,
            "metadata": json.dumps({"dataset": name, "entry": entry}, default=str),
            "source": f"reasoning_gym:{name} entry {index}",
        })
    return rows
