"""The built-in task and user prompt files; bad files fail before anything is written."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages import arithmetic
from bolt_tasks.stages.prompt_files import build_prompts
from bolt_tasks.stages.prompts import write_prompts


def test_builtin_split_is_seeded_disjoint_and_mixed():
    table = build_prompts(TaskConfig(train_prompts=1000, heldout_prompts=512, seed=0))
    rows = table.to_pylist()
    heldout = {r["prompt"] for r in rows if r["split"] == "heldout"}
    train = {r["prompt"] for r in rows if r["split"] == "train"}
    assert len(heldout) == 512 and len(train) == 1000
    assert not heldout & train
    assert table.equals(build_prompts(TaskConfig(train_prompts=1000, heldout_prompts=512, seed=0)))
    assert not table.equals(build_prompts(TaskConfig(train_prompts=1000, heldout_prompts=512, seed=1)))
    shares = [sum(r["difficulty"] == k for r in rows) / len(rows) for k in range(3)]
    assert all(0.15 < share < 0.6 for share in shares), shares
    for r in rows:
        a, b = int(r["prompt"][:2]), int(r["prompt"][3:5])
        assert r["answer"] == f"{a + b:03d}" and r["difficulty"] == arithmetic.carries(a, b)


def test_carries_by_hand():
    assert arithmetic.carries(12, 34) == 0
    assert arithmetic.carries(15, 37) == 1
    assert arithmetic.carries(95, 37) == 2
    assert arithmetic.carries(50, 50) == 1
    assert arithmetic.answer_text(7, 85) == "092"


def write_jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def user_task(train, heldout):
    return TaskConfig(prompts_file=train, heldout_file=heldout)


def test_user_files_jsonl_and_parquet(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"prompt": "2+2=", "answer": "4", "id": "q1"}, {"prompt": "3+3=", "answer": "6"}])
    heldout = tmp_path / "heldout.parquet"
    pq.write_table(pa.table({"prompt": ["4+4="], "answer": ["8"]}), heldout)
    rows = build_prompts(user_task(train, heldout)).to_pylist()
    assert [r["prompt_id"] for r in rows] == ["q1", "train-2", "heldout-1"]
    assert [r["split"] for r in rows] == ["train", "train", "heldout"]


@pytest.mark.parametrize(
    "records, expected",
    [
        (['{"prompt": "1+1=", "answer": "2"}', '{"prompt": "2+2=", "answer": '], ["line 2", "malformed JSON"]),
        ([{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2="}], ["line 2", "'answer'", "missing"]),
        ([{"answer": "2"}], ["line 1", "'prompt'", "missing"]),
        ([{"prompt": "1+1=", "answer": [2]}], ["line 1", "'answer'", "string"]),
        ([{"prompt": "1+1=", "answer": "2", "id": "x"}, {"prompt": "2+2=", "answer": "4", "id": "x"}],
         ["line 2", "'id'", "repeats"]),
    ],
)
def test_bad_prompt_file_names_file_line_field_and_writes_nothing(tmp_path, records, expected):
    train = write_jsonl(tmp_path / "train.jsonl", records)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "9+9=", "answer": "18"}])
    out = tmp_path / "out" / "prompts.parquet"
    with pytest.raises(BoltInputError) as error:
        write_prompts(user_task(train, heldout), out)
    message = str(error.value)
    assert str(train) in message
    for fragment in expected:
        assert fragment in message
    assert not out.exists() and not out.parent.exists()


def test_bad_parquet_row_is_named(tmp_path):
    train = tmp_path / "train.parquet"
    pq.write_table(pa.table({"prompt": ["1+1=", None], "answer": ["2", "4"]}), train)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "9+9=", "answer": "18"}])
    with pytest.raises(BoltInputError, match=r"train.parquet row 2: missing field 'prompt'"):
        build_prompts(user_task(train, heldout))


def test_heldout_overlapping_training_is_refused(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "1+1=", "answer": "2"}])
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "1+1=", "answer": "2"}])
    with pytest.raises(BoltInputError, match="must not overlap"):
        build_prompts(user_task(train, heldout))


def test_heldout_overlap_names_the_users_field_and_both_lines(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"question": "1+1=", "answer": "2"},
                                                   {"question": "2+2=", "answer": "4"}])
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"question": "2+2=", "answer": "4"}])
    task = TaskConfig(prompts_file=train, heldout_file=heldout, prompt_field="question")
    with pytest.raises(BoltInputError) as error:
        build_prompts(task)
    assert str(error.value).startswith(
        f"{heldout} line 1: field 'question' repeats a training prompt ({train} line 2): '2+2='; "
        "1 held-out prompt(s) repeat training prompts")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_byte_order_mark_crlf_and_blank_lines_read_as_the_plain_file(tmp_path, suffix):
    records = [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2=", "answer": "4", "id": 7}]
    plain = write_jsonl(tmp_path / f"plain{suffix}", records)
    windows = tmp_path / f"windows{suffix}"
    lines = [json.dumps(records[0]), "", json.dumps(records[1]), ""]
    windows.write_bytes("\ufeff".encode() + "\r\n".join(lines).encode())
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "9+9=", "answer": "18"}])
    read = [build_prompts(user_task(train, heldout)).drop_columns(["prompt_id"]).to_pylist()
            for train in (plain, windows)]
    assert [r["prompt"] for r in read[1]] == ["1+1=", "2+2=", "9+9="]
    assert read[0] == read[1]


WRONG_TYPES = {"a number": 7, "a list": ["7"], "an object": {"text": "7"}, "a boolean": True}


@pytest.mark.parametrize("field", ["prompt", "answer"])
@pytest.mark.parametrize("kind", sorted(WRONG_TYPES))
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_field_of_the_wrong_type_is_refused_naming_file_row_and_field(tmp_path, field, kind, suffix):
    records = [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2=", "answer": "4"}]
    train = tmp_path / f"train{suffix}"
    if suffix == ".jsonl":  # one bad line among good ones
        records[1][field] = WRONG_TYPES[kind]
        write_jsonl(train, records)
    else:  # a Parquet column has one type: every row's value is of the wrong one
        pq.write_table(pa.Table.from_pylist([r | {field: WRONG_TYPES[kind]} for r in records]), train)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "9+9=", "answer": "18"}])
    out = tmp_path / "out" / "prompts.parquet"
    with pytest.raises(BoltInputError) as error:
        write_prompts(user_task(train, heldout), out)
    where = "line 2" if suffix == ".jsonl" else "row 1"
    assert str(error.value).startswith(f"{train} {where}: field '{field}' must be a string, not {kind}")
    assert not out.parent.exists()


@pytest.mark.parametrize("value, refused", [(3, False), ("q3", False), (3.5, True), ([3], True), (True, True)])
def test_an_id_is_a_string_or_an_integer(tmp_path, value, refused):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "1+1=", "answer": "2", "id": value}])
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "9+9=", "answer": "18"}])
    if refused:
        with pytest.raises(BoltInputError, match=r"train.jsonl line 1: field 'id' must be a string or an integer"):
            build_prompts(user_task(train, heldout))
    else:
        assert build_prompts(user_task(train, heldout))["prompt_id"][0].as_py() == str(value)
