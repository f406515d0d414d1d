"""Verifier scoring stage: every rollout's reward, in rewards.parquet.

A response the verifier cannot score (it raised, timed out, died, or returned something that
is not a finite number within range) gets task.verifier_fallback_reward and its error text in
the `error` column, and never counts as a success. Past task.max_verifier_error_share of
responses the stage stops with a sentence naming the count, the first error and the table.
A user's verifier is part of the cache key: edit it and scoring runs again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa

from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.progress import track
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import REWARDS
from bolt_tasks.stages.verifier_pool import score_in_workers
from bolt_tasks.stages.verifier_registry import call_verifier, is_registered, resolve_verifier, runs_inline

# A verifier module may name data files it reads (paths relative to the module), so that an
# edit to them re-runs scoring too: BOLT_VERIFIER_FILES = ["answers.json"].
DECLARED_FILES = "BOLT_VERIFIER_FILES"


def score_responses(
    items: list[tuple], task: TaskConfig, description: str
) -> tuple[np.ndarray, list[str | None]]:
    """Rewards (fallback where errored) and error texts of (prompt, answer, response,
    finish_reason, metadata) items. The registry's quick verifiers run here; the others, and a
    user's, in worker processes."""
    if runs_inline(task.verifier_name):
        verifier = resolve_verifier(task.verifier_name)
        results = [call_verifier(verifier, *item) for item in track(items, len(items), description)]
    else:
        results = score_in_workers(task.verifier_name, items, task.verifier_timeout_s,
                                   task.verifier_workers, description)
    rewards = np.array([task.verifier_fallback_reward if r is None else r for r, _ in results],
                       dtype=np.float64)
    return rewards, [error for _, error in results]


def prompt_rows(prompts: pa.Table) -> list[dict]:
    """prompt_id, prompt, answer and metadata (None where a table has no such column)."""
    rows = prompts.select([c for c in ("prompt_id", "prompt", "answer", "metadata")
                           if c in prompts.column_names]).to_pylist()
    return [row if "metadata" in row else row | {"metadata": None} for row in rows]


def check_error_share(errors: list[str | None], keys: list[tuple[str, int]], task: TaskConfig,
                      table_path: str | Path) -> None:
    """Stop when more than task.max_verifier_error_share of the responses errored."""
    failed = [i for i, error in enumerate(errors) if error is not None]
    if errors and len(failed) / len(errors) > task.max_verifier_error_share:
        first = failed[0]
        raise BoltInputError(
            f"verifier {task.verifier_name!r} could not score {len(failed)} of {len(errors)} responses "
            f"({len(failed) / len(errors):.1%}, above task.max_verifier_error_share="
            f"{task.max_verifier_error_share:g}); first, prompt {keys[first][0]!r} sample "
            f"{keys[first][1]}: {errors[first]}; every error is in {table_path}"
        )


def score_rollouts(prompts: pa.Table, rollouts: pa.Table, task: TaskConfig, out_path: str | Path) -> TableRef:
    """Score every rollout with the task's verifier (in its worker processes, each response
    within its time limit); write rewards.parquet. A response the verifier could not score gets
    the fallback reward and its error; past the allowed share of errors, BoltInputError."""
    by_id = {row["prompt_id"]: row for row in prompt_rows(prompts)}
    rows = rollouts.select(["prompt_id", "sample_idx", "response", "finish_reason"]).to_pylist()
    items = [(by_id[r["prompt_id"]]["prompt"], by_id[r["prompt_id"]]["answer"], r["response"],
              r["finish_reason"], by_id[r["prompt_id"]]["metadata"]) for r in rows]
    rewards, errors = score_responses(items, task, f"verify with {task.verifier_name}")
    keys = [(r["prompt_id"], r["sample_idx"]) for r in rows]
    table = pa.table(
        {
            "prompt_id": [k[0] for k in keys],
            "sample_idx": [k[1] for k in keys],
            "reward": rewards,
            "verifier": [task.verifier_name] * len(rows),
            "error": errors,
        },
        schema=REWARDS.schema,
    )
    written = REWARDS.write(table, out_path)
    check_error_share(errors, keys, task, out_path)
    return written


def verifier_code(name: str) -> dict[str, str]:
    """What a user's verifier runs, by content: its module's source and its declared files.
    (The registry's verifiers are part of this package, which the stage's key covers.)"""
    if is_registered(name) or ":" not in name:
        return {}
    module_name = name.partition(":")[0]
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        return {"module": module_name}
    module_file = Path(spec.origin)
    code = {str(module_file): module_file.read_text()}
    declared = getattr(importlib.import_module(module_name), DECLARED_FILES, [])
    for relative in declared:
        path = module_file.parent / relative
        code[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return code
