"""Verifier scoring stage: a registry of reward functions by name, and rewards.parquet.

A verifier is f(prompt, answer, response, finish_reason) -> float. An exception, or a value
that is not a finite number, is recorded in the `error` column with the configured fallback
reward: a broken verifier never crashes the round.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.progress import track
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import REWARDS

Verifier = Callable[[str, str, str, str], float]

def arithmetic_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff the text before EOS is exactly the answer and EOS was emitted."""
    return float(finish_reason == "stop" and response == answer)


def exact_match_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff the response equals the answer after trimming surrounding whitespace."""
    return float(response.strip() == answer.strip())


VERIFIERS: dict[str, Verifier] = {
    "arithmetic": arithmetic_verifier,
    "exact_match": exact_match_verifier,
}


def resolve_verifier(name: str) -> Verifier:
    if name in VERIFIERS:
        return VERIFIERS[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise BoltInputError(f"field 'task.verifier': cannot import {name!r} ({error})") from None
    raise BoltInputError(
        f"field 'task.verifier': unknown verifier {name!r}; known: {sorted(VERIFIERS)} "
        "or 'module:function'"
    )


def score_one(verifier: Verifier, prompt, answer, response, finish_reason, fallback):
    """(reward, error): the verifier's finite reward, or the fallback and what went wrong."""
    try:
        reward = float(verifier(prompt, answer, response, finish_reason))
    except Exception as error:  # any verifier failure is data, not a crash
        return fallback, f"{type(error).__name__}: {error}"
    if not math.isfinite(reward):
        return fallback, f"verifier returned non-finite reward {reward}"
    return reward, None


def score_rollouts(
    prompts: pa.Table, rollouts: pa.Table, verifier_name: str, fallback: float, out_path: str | Path
) -> TableRef:
    verifier = resolve_verifier(verifier_name)
    by_id = {row["prompt_id"]: row for row in prompts.select(["prompt_id", "prompt", "answer"]).to_pylist()}
    rows = rollouts.select(["prompt_id", "sample_idx", "response", "finish_reason"]).to_pylist()
    rewards, errors = [], []
    for row in track(rows, len(rows), f"verify with {verifier_name}"):
        prompt = by_id[row["prompt_id"]]
        reward, error = score_one(
            verifier, prompt["prompt"], prompt["answer"], row["response"], row["finish_reason"], fallback
        )
        rewards.append(reward)
        errors.append(error)
    table = pa.table(
        {
            "prompt_id": [r["prompt_id"] for r in rows],
            "sample_idx": [r["sample_idx"] for r in rows],
            "reward": rewards,
            "verifier": [verifier_name] * len(rows),
            "error": errors,
        },
        schema=REWARDS.schema,
    )
    return REWARDS.write(table, out_path)


@stage("score-rollouts")
def score_task(prompts: TableRef, rollouts: TableRef, task: TaskConfig, out_path: str) -> TableRef:
    return score_rollouts(
        prompts.read(), rollouts.read(), task.verifier, task.verifier_fallback_reward, out_path
    )
