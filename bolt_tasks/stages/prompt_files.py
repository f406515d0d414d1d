"""Reading prompts: the built-in task's, or the user's JSONL or Parquet files, validated row by
row. Every problem is one BoltInputError naming file, line (or row) and field, raised before
anything is written. Only pyarrow and the standard library: the CLI reads prompt files before
anything heavy is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tables import PROMPTS
from bolt_tasks.stages import arithmetic


def _jsonl_lines(path: Path) -> list[str]:
    """The file's lines, decoded as UTF-8, or an error naming the first line that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BoltInputError(
            f"{path} line {line}: not UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        ) from None


def _raw_records(path: Path) -> list[tuple[str, dict]]:
    """(location, record) pairs, location being 'line N' (JSONL) or 'row N' (Parquet), 1-based."""
    if not path.exists():
        raise BoltInputError(f"{path}: prompt file not found")
    if not path.is_file():
        raise BoltInputError(f"{path}: is a directory, not a prompt file (.jsonl or .parquet)")
    if path.suffix == ".parquet":
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise BoltInputError(f"{path}: not a readable Parquet file ({error})") from None
        return [(f"row {i}", row) for i, row in enumerate(rows, start=1)]
    if path.suffix not in (".jsonl", ".json"):
        raise BoltInputError(f"{path}: unsupported prompt file type; use .jsonl or .parquet")
    records = []
    for number, line in enumerate(_jsonl_lines(path), start=1):
        if not line.strip():
            continue
        if number == 1 and line.lstrip().startswith("["):
            raise BoltInputError(f"{path} line 1: a JSON array; prompt files are JSON Lines, one "
                                 "JSON object per line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BoltInputError(f"{path} line {number}: malformed JSON ({error.msg}); prompt files "
                                 "are JSON Lines, one JSON object per line") from None
        if not isinstance(record, dict):
            raise BoltInputError(f"{path} line {number}: expected a JSON object")
        records.append((f"line {number}", record))
    return records


def load_prompt_file(path: str | Path, split: str) -> list[dict]:
    """Validated rows of one prompt file, each with its `source` ('<file> line N')."""
    path = Path(path)
    rows, seen = [], {}
    for location, record in _raw_records(path):
        for field in ("prompt", "answer"):
            if field not in record or record[field] is None:
                raise BoltInputError(f"{path} {location}: missing field '{field}'")
            if not isinstance(record[field], str) or not record[field]:
                raise BoltInputError(f"{path} {location}: field '{field}' must be a non-empty string")
        # Generated ids name the split, not the file: the two files may share a name.
        prompt_id = str(record["id"]) if record.get("id") is not None else f"{split}-{location.split()[1]}"
        if prompt_id in seen:
            raise BoltInputError(
                f"{path} {location}: field 'id' repeats {prompt_id!r} (first at {seen[prompt_id]})"
            )
        seen[prompt_id] = location
        rows.append(
            {"prompt_id": prompt_id, "prompt": record["prompt"], "answer": record["answer"],
             "split": split, "difficulty": None, "source": f"{path} {location}"}
        )
    if not rows:
        raise BoltInputError(f"{path}: no prompts in file")
    return rows


def read_prompts(task: TaskConfig) -> tuple[pa.Table, dict[str, str]]:
    """The prompts table, and where each prompt came from ({prompt_id: '<file> line N'})."""
    if task.prompts_file is None:
        table = arithmetic.prompts_table(task.seed, task.train_prompts, task.heldout_prompts)
        return table.cast(PROMPTS.schema), dict.fromkeys(table["prompt_id"].to_pylist(), "built-in task")
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
    rows = train + heldout
    return (pa.Table.from_pylist(rows, schema=PROMPTS.schema),
            {row["prompt_id"]: row["source"] for row in rows})


def build_prompts(task: TaskConfig) -> pa.Table:
    return read_prompts(task)[0]
