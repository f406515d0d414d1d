"""Held-out evaluations kept across rounds and pipelines, by content.

pi_ref is evaluated on the same held-out prompts in every round of a refresh pipeline, and in
every pipeline that shares its reference model and held-out set: the same greedy and
temperature-1 samples, the same rewards. A round's own cache records live in its directory, so
without this store each round would sample them again. The key is everything the evaluation's
numbers depend on: the model and reference by content digest, the held-out rows themselves
(prompt, answer, messages, metadata: not the table's path, nor its training rows), the
evaluation settings, the task's presentation and verifier (with a user's verifier code), the
stop strings, and the source of the code that evaluates. An entry is two Parquet files under
runs/evaluations/<key>/ and digests.json, their content digests, each written atomically; delete
the folder to forget them. An entry whose files are missing or whose content is not the recorded
one is not used (one log line names the file): the evaluation runs again and replaces it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect.utilities.hashing import hash_objects

from bolt_tasks.core.caching import code_sources
from bolt_tasks.core.config import EvaluationConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.progress import run_logger
from bolt_tasks.core.storage import ModelRef, TableRef, atomic_path, file_digest, write_text_atomic

EVALUATION_FILES = ("eval.parquet", "samples.parquet")
DIGESTS = "digests.json"
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
    """The stored evaluation copied to the round's paths, or None when there is none or it is
    damaged (a file missing, or its content not the digest keep recorded): then nothing is
    copied, so a round that fails to evaluate again leaves no stale table behind."""
    entry = store / key
    if not entry.is_dir():
        return None
    damage = _damage(entry)
    if damage is not None:
        run_logger().warning(f"evaluation store entry {entry}: {damage}; evaluating again")
        return None
    refs = []
    for name, destination in zip(EVALUATION_FILES, (out_path, samples_path)):
        with atomic_path(destination) as temp:
            shutil.copyfile(entry / name, temp)
        refs.append(TableRef.of_file(destination))
    return refs[0], refs[1]


def _damage(entry: Path) -> str | None:
    """What makes a stored entry unusable, or None when each file has the digest keep recorded."""
    try:
        digests = json.loads((entry / DIGESTS).read_text())
    except (OSError, ValueError) as error:
        return f"{entry / DIGESTS} cannot be read ({getattr(error, 'strerror', None) or error})"
    for name in EVALUATION_FILES:
        try:
            found = file_digest(entry / name)
        except FileNotFoundError:
            return f"{entry / name} is missing"
        if found != digests.get(name):
            return f"{entry / name} changed since it was stored (sha256 {found}, stored {digests.get(name)})"
    return None


def keep(store: Path, key: str, evaluated: tuple[TableRef, TableRef]) -> None:
    """Store a round's evaluation under its key (each file renamed into place whole), the
    digests last: an entry without them is not used."""
    entry = store / key
    entry.mkdir(parents=True, exist_ok=True)
    (entry / DIGESTS).unlink(missing_ok=True)
    for name, ref in zip(EVALUATION_FILES, evaluated):
        with atomic_path(entry / name) as temp:
            shutil.copyfile(ref.path, temp)
    write_text_atomic(json.dumps({name: ref.digest for name, ref in zip(EVALUATION_FILES, evaluated)}),
                      entry / DIGESTS)
