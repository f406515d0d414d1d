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
from bolt_tasks.core.config_task import REASONING_GYM
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tables import PROMPTS
from bolt_tasks.stages import arithmetic
from bolt_tasks.stages.answer_checks import extract_answer
from bolt_tasks.stages.reasoning_gym_source import generated_rows


def _jsonl_lines(path: Path) -> list[str]:
    """The file's lines, decoded as UTF-8 (a byte-order mark, as Notepad, Excel and PowerShell
    write, dropped; CRLF or LF line ends), or an error naming the first line that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BoltInputError(
            f"{path} line {line}: not UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        ) from None


def _parquet_rows(path: Path, files: list[Path]) -> list[tuple[str, dict]]:
    try:
        table = pa.concat_tables([pq.read_table(file) for file in files], promote_options="default")
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise BoltInputError(f"{path}: not readable Parquet ({error})") from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist(), start=1)]


def _folder_records(path: Path) -> list[tuple[str, dict]]:
    """A Hugging Face datasets folder (save_to_disk) or a folder of Parquet shards."""
    if (path / "dataset_dict.json").exists():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise BoltInputError(f"{path}: a DatasetDict folder; give one split's folder, e.g. "
                             f"{path / (splits[0] if splits else 'train')}")
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        try:
            from datasets import load_from_disk
        except ImportError:
            raise BoltInputError(f"{path}: a Hugging Face datasets folder needs the `datasets` "
                                 "package (`bash scripts/install.sh --real`)") from None
        try:
            rows = load_from_disk(str(path)).to_list()
        except Exception as error:  # datasets raises many types for a broken folder
            raise BoltInputError(f"{path}: not a readable datasets folder ({error})") from None
        return [(f"row {i}", row) for i, row in enumerate(rows, start=1)]
    shards = sorted(path.glob("*.parquet"))
    if not shards:
        raise BoltInputError(f"{path}: is a directory, not a prompt file (.jsonl or .parquet), a "
                             "folder of Parquet shards or a datasets folder (save_to_disk)")
    return _parquet_rows(path, shards)


def _raw_records(path: Path) -> list[tuple[str, dict]]:
    """(location, record) pairs, location being 'line N' (JSONL) or 'row N' (Parquet, a folder
    of Parquet shards in name order, a datasets folder), 1-based."""
    if not path.exists():
        raise BoltInputError(f"{path}: prompt file not found")
    if path.is_dir():
        return _folder_records(path)
    if path.suffix == ".parquet":
        return _parquet_rows(path, [path])
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


_JSON_TYPES = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (list, "a list"),
               (dict, "an object"))


def _type_name(value) -> str:
    """What a JSON or Parquet value is, as its file would call it (bool before int: True is an int)."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _text(record: dict, field: str, where: str) -> str:
    value = record.get(field)
    if value is None:
        raise BoltInputError(f"{where}: missing field '{field}'")
    if not isinstance(value, str):
        shown = json.dumps(value, default=str)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise BoltInputError(f"{where}: field '{field}' must be a string, not {_type_name(value)} "
                             f"({shown}); write it in quotes")
    if not value:
        raise BoltInputError(f"{where}: field '{field}' must be a non-empty string")
    return value


def _prompt_id(record: dict, where: str) -> str | None:
    """The row's own id: a string or an integer (ids 1, 2, ... are common); None without one."""
    value = record.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BoltInputError(f"{where}: field 'id' must be a string or an integer, not "
                             f"{_type_name(value)}")
    return str(value)


def _conversation(record: dict, field: str, where: str) -> tuple[str, str, str | None]:
    """(prompt text, the prompt's turns as JSON, a final assistant turn's text or None)."""
    turns = record[field]
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("content"), str)
        for t in turns
    ):
        raise BoltInputError(f"{where}: field '{field}' must be a list of {{role, content}} turns")
    users = [i for i, turn in enumerate(turns) if turn["role"] == "user"]
    if not users:
        raise BoltInputError(f"{where}: field '{field}' has no user turn")
    last = users[-1]
    reply = next((t["content"] for t in turns[last + 1:] if t["role"] == "assistant"), None)
    prompt_turns = [{"role": t["role"], "content": t["content"]} for t in turns[: last + 1]]
    return turns[last]["content"], json.dumps(prompt_turns), reply


def load_prompt_file(path: str | Path, split: str, task: TaskConfig | None = None) -> list[dict]:
    """Validated rows of one prompt file, each with its `source` ('<file> line N'): the prompt
    from task.prompt_field or a chat-format task.messages_field, the answer from
    task.answer_field (or the conversation's last assistant turn) read by task.answer_format."""
    path, task = Path(path), task or TaskConfig()
    rows, seen = [], {}
    for location, record in _raw_records(path):
        where = f"{path} {location}"
        messages = reply = None
        if isinstance(record.get(task.messages_field), list):
            prompt, messages, reply = _conversation(record, task.messages_field, where)
        else:
            prompt = _text(record, task.prompt_field, where)
        if record.get(task.answer_field) is None and reply is not None:
            solution, answer_from = reply, f"the last assistant turn of field '{task.messages_field}'"
        else:
            solution, answer_from = _text(record, task.answer_field, where), f"field '{task.answer_field}'"
        answer = extract_answer(solution, task.answer_format)
        if answer is None:
            raise BoltInputError(f"{where}: {answer_from} has no final value for answer_format "
                                 f"{task.answer_format!r} ('#### <answer>' or \\boxed{{...}})")
        # Generated ids name the split, not the file: the two files may share a name.
        prompt_id = _prompt_id(record, where) or f"{split}-{location.split()[1]}"
        if prompt_id in seen:
            raise BoltInputError(
                f"{path} {location}: field 'id' repeats {prompt_id!r} (first at {seen[prompt_id]})"
            )
        seen[prompt_id] = location
        rows.append(
            {"prompt_id": prompt_id, "prompt": prompt, "answer": answer, "split": split,
             "difficulty": None, "messages": messages, "metadata": None, "source": where}
        )
    if not rows:
        raise BoltInputError(f"{path}: no prompts in file")
    return rows


def read_prompts(task: TaskConfig) -> tuple[pa.Table, dict[str, str]]:
    """The prompts table, and where each prompt came from ({prompt_id: '<file> line N'})."""
    if task.prompts_file is None and task.source.startswith(REASONING_GYM):
        rows = generated_rows(task.source.removeprefix(REASONING_GYM), task.source_options,
                              task.seed, task.train_prompts, task.heldout_prompts)
        return (pa.Table.from_pylist(rows, schema=PROMPTS.schema),
                {row["prompt_id"]: row["source"] for row in rows})
    if task.prompts_file is None:
        table = arithmetic.prompts_table(task.seed, task.train_prompts, task.heldout_prompts)
        return table.cast(PROMPTS.schema), dict.fromkeys(table["prompt_id"].to_pylist(), "built-in task")
    train = load_prompt_file(task.prompts_file, "train", task)
    heldout = load_prompt_file(task.heldout_file, "heldout", task)
    training_prompts = {r["prompt"]: r for r in train}
    repeats = [r for r in heldout if r["prompt"] in training_prompts]
    if repeats:
        first = repeats[0]
        raise BoltInputError(
            f"{first['source']}: field '{prompt_field(first['messages'], task)}' repeats a training "
            f"prompt ({training_prompts[first['prompt']]['source']}): {first['prompt']!r}; "
            f"{len(repeats)} held-out prompt(s) repeat training prompts, and held-out prompts must "
            "not overlap training prompts"
        )
    train_ids = {r["prompt_id"] for r in train}
    clash = [r["prompt_id"] for r in heldout if r["prompt_id"] in train_ids]
    if clash:
        raise BoltInputError(f"{task.heldout_file}: field 'id' {clash[0]!r} is also a training id")
    rows = train + heldout
    return (pa.Table.from_pylist(rows, schema=PROMPTS.schema),
            {row["prompt_id"]: row["source"] for row in rows})


def prompt_field(messages: str | None, task: TaskConfig) -> str:
    """The field of the user's file a prompt was read from (for messages naming it)."""
    return task.messages_field if messages is not None else task.prompt_field


def build_prompts(task: TaskConfig) -> pa.Table:
    return read_prompts(task)[0]
