"""Held-out evaluations kept across rounds and pipelines, by content.

pi_ref is evaluated on the same held-out prompts in every round of a refresh pipeline, and in
every pipeline that shares its reference model and held-out set: the same greedy and
temperature-1 samples, the same rewards. A round's own cache records live in its directory, so
without this store each round would sample them again. The key is everything the evaluation's
numbers depend on: the model and reference by content digest, the held-out rows themselves
(prompt, answer, messages, metadata: not the table's path, nor its training rows), the
evaluation settings, the task's presentation and verifier (with a user's verifier code), the
stop strings, and the source of the code that evaluates. An entry is two Parquet files under
runs/evaluations/<key>/, written atomically; delete the folder to forget them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect.utilities.hashing import hash_objects

from bolt_tasks.core.caching import code_sources
from bolt_tasks.core.config import EvaluationConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.storage import ModelRef, TableRef, atomic_path

EVALUATION_FILES = ("eval.parquet", "samples.parquet")
# What a held-out evaluation's numbers do not depend on: which training prompts there are.
_TRAINING_ONLY = {"train_prompts", "prompts_file", "heldout_file"}


def evaluation_key(prompts: pa.Table, model: ModelRef, reference: ModelRef,
                   evaluation: EvaluationConfig, task: TaskConfig, stop: list[str],
                   shard: Shard | None, verifier_code: dict[str, str], module: str) -> str:
    heldout = prompts.filter(pc.equal(prompts["split"], "heldout"))
    if shard is not None:
        heldout = shard.of(heldout)
    columns = [c for c in ("prompt_id", "prompt", "answer", "messages", "metadata")
               if c in heldout.column_names]
    return hash_objects({
        "heldout": heldout.select(columns).to_pydict(),
        "model": model.digest, "reference": reference.digest,
        "evaluation": evaluation.model_dump(mode="json"),
        "task": {k: v for k, v in task.model_dump(mode="json").items() if k not in _TRAINING_ONLY},
        "stop": list(stop), "verifier_code": verifier_code, "code": code_sources(module),
    }, raise_on_failure=True)[:24]


def fetch(store: Path, key: str, out_path: str | Path, samples_path: str | Path) -> tuple[TableRef, TableRef] | None:
    """The stored evaluation copied to the round's paths, or None when there is none."""
    entry = store / key
    if not all((entry / name).is_file() for name in EVALUATION_FILES):
        return None
    for name, destination in zip(EVALUATION_FILES, (out_path, samples_path)):
        with atomic_path(destination) as temp:
            shutil.copyfile(entry / name, temp)
    return TableRef.of_file(out_path), TableRef.of_file(samples_path)


def keep(store: Path, key: str, out_path: str | Path, samples_path: str | Path) -> None:
    """Store a round's evaluation under its key (each file renamed into place whole)."""
    entry = store / key
    entry.mkdir(parents=True, exist_ok=True)
    for name, source in zip(EVALUATION_FILES, (out_path, samples_path)):
        with atomic_path(entry / name) as temp:
            shutil.copyfile(source, temp)
