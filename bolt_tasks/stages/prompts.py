"""Prompts stage: the built-in task's prompts or the user's own files, as prompts.parquet.

User files are JSONL (one object per line) or Parquet, with string fields `prompt` and
`answer` and an optional `id`. Every problem is reported with file, line (or row) and field,
before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.storage import TableRef, file_digest
from bolt_tasks.core.tables import PROMPTS
from bolt_tasks.stages import arithmetic


def _raw_records(path: Path) -> list[tuple[str, dict]]:
    """(location, record) pairs, location being 'line N' (JSONL) or 'row N' (Parquet), 1-based."""
    if not path.exists():
        raise BoltInputError(f"{path}: prompt file not found")
    if path.suffix == ".parquet":
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise BoltInputError(f"{path}: not a readable Parquet file ({error})") from None
        return [(f"row {i}", row) for i, row in enumerate(rows, start=1)]
    if path.suffix not in (".jsonl", ".json"):
        raise BoltInputError(f"{path}: unsupported prompt file type; use .jsonl or .parquet")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BoltInputError(f"{path} line {number}: malformed JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise BoltInputError(f"{path} line {number}: expected a JSON object")
        records.append((f"line {number}", record))
    return records


def load_prompt_file(path: str | Path, split: str) -> list[dict]:
    path = Path(path)
    rows, seen = [], {}
    for location, record in _raw_records(path):
        for field in ("prompt", "answer"):
            if field not in record or record[field] is None:
                raise BoltInputError(f"{path} {location}: missing field '{field}'")
            if not isinstance(record[field], str) or not record[field]:
                raise BoltInputError(f"{path} {location}: field '{field}' must be a non-empty string")
        prompt_id = str(record["id"]) if record.get("id") is not None else f"{path.stem}-{location.split()[1]}"
        if prompt_id in seen:
            raise BoltInputError(
                f"{path} {location}: field 'id' repeats {prompt_id!r} (first at {seen[prompt_id]})"
            )
        seen[prompt_id] = location
        rows.append(
            {"prompt_id": prompt_id, "prompt": record["prompt"], "answer": record["answer"],
             "split": split, "difficulty": None}
        )
    if not rows:
        raise BoltInputError(f"{path}: no prompts in file")
    return rows


def build_prompts(task: TaskConfig) -> pa.Table:
    if task.prompts_file is None:
        return arithmetic.prompts_table(task.seed, task.train_prompts, task.heldout_prompts).cast(
            PROMPTS.schema
        )
    train = load_prompt_file(task.prompts_file, "train")
    heldout = load_prompt_file(task.heldout_file, "heldout")
    overlap = {r["prompt"] for r in train} & {r["prompt"] for r in heldout}
    if overlap:
        raise BoltInputError(
            f"{task.heldout_file}: field 'prompt' repeats {len(overlap)} training prompt(s), "
            f"e.g. {sorted(overlap)[0]!r}; held-out prompts must not overlap training prompts"
        )
    train_ids = {r["prompt_id"] for r in train}
    clash = [r["prompt_id"] for r in heldout if r["prompt_id"] in train_ids]
    if clash:
        raise BoltInputError(f"{task.heldout_file}: field 'id' {clash[0]!r} is also a training id")
    return pa.Table.from_pylist(train + heldout, schema=PROMPTS.schema)


def write_prompts(task: TaskConfig, out_path: str | Path) -> TableRef:
    return PROMPTS.write(build_prompts(task), out_path)


class PromptFilesContent(CachePolicy):
    """Cache key part: the bytes of the user's prompt files, so an edited file is read again."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        task = inputs["task"]
        files = [Path(f) for f in (task.prompts_file, task.heldout_file) if f is not None]
        return hash_objects(*[file_digest(f) if f.is_file() else "missing" for f in files])


@stage("prompts", extra_policy=PromptFilesContent())
def prompts_task(task: TaskConfig, out_path: str) -> TableRef:
    return write_prompts(task, out_path)
