"""Prompt sources beyond prompt/answer JSONL, answers from worked solutions, chat rendering,
and the math, gsm8k and reasoning_gym verifiers running in the verifier pool."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.policy.character_tokenizer import character_tokenizer
from bolt_tasks.policy.prompting import render_prompts
from bolt_tasks.stages.answer_checks import boxed_final, extract_answer, gsm8k_final
from bolt_tasks.stages.prompt_files import load_prompt_file, read_prompts


def jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_final_values_of_worked_solutions():
    assert gsm8k_final("She sells 16 - 3 - 4 = 9 eggs... #### 1,800") == "1800"
    assert boxed_final(r"so $x = \boxed{\frac{1}{2}}$ and done") == r"\frac{1}{2}"
    assert boxed_final(r"\boxed{a} then \boxed{b^{2}}") == "b^{2}"
    assert extract_answer("no marker here", "gsm8k") is None
    assert extract_answer(r"#### 7", "auto") == "7" and extract_answer(r"\boxed{7}", "auto") == "7"
    assert extract_answer(" 42 ", "plain") == "42"


def test_mapped_columns_and_gsm8k_solutions(tmp_path):
    path = jsonl(tmp_path / "gsm.jsonl", [
        {"question": "Ann has 3 apples and buys 4. How many?", "solution": "3 + 4 = 7\n#### 7"},
        {"question": "What is 1000 + 500?", "solution": "#### 1,500"},
    ])
    task = TaskConfig(prompt_field="question", answer_field="solution", answer_format="gsm8k")
    rows = load_prompt_file(path, "train", task)
    assert [(r["prompt"], r["answer"]) for r in rows] == [
        ("Ann has 3 apples and buys 4. How many?", "7"), ("What is 1000 + 500?", "1500")]


def test_chat_format_rows(tmp_path):
    path = jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 6 * 7?"},
        {"role": "assistant", "content": "6 * 7 = 42. #### 42"},
    ]}])
    [row] = load_prompt_file(path, "train", TaskConfig(answer_format="gsm8k"))
    assert row["prompt"] == "What is 6 * 7?" and row["answer"] == "42"
    assert [t["role"] for t in json.loads(row["messages"])] == ["system", "user"]


@pytest.mark.parametrize("record, task, message", [
    ({"prompt": "q"}, TaskConfig(prompt_field="question"), "line 1: missing field 'question'"),
    ({"messages": [{"role": "assistant", "content": "hi"}], "answer": "1"}, TaskConfig(),
     "line 1: field 'messages' has no user turn"),
    ({"prompt": "q", "answer": "it is seven"}, TaskConfig(answer_format="gsm8k"),
     "line 1: field 'answer' has no final value for answer_format 'gsm8k'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "no value"}]},
     TaskConfig(answer_format="boxed"), "the last assistant turn of field 'messages' has no final value"),
])
def test_bad_rows_name_the_file_row_and_column(tmp_path, record, task, message):
    path = jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(BoltInputError) as raised:
        load_prompt_file(path, "train", task)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_a_folder_of_parquet_shards_and_a_datasets_folder(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(pa.table({"prompt": ["1+1="], "answer": ["2"]}), shards / "part-0.parquet")
    pq.write_table(pa.table({"prompt": ["2+2="], "answer": ["4"]}), shards / "part-1.parquet")
    assert [r["answer"] for r in load_prompt_file(shards, "train")] == ["2", "4"]

    from datasets import Dataset, DatasetDict

    saved = tmp_path / "saved"
    Dataset.from_dict({"problem": ["x + 1 = 3"], "solution": [r"so x = \boxed{2}"]}).save_to_disk(saved)
    task = TaskConfig(prompt_field="problem", answer_field="solution", answer_format="boxed")
    assert load_prompt_file(saved, "heldout", task)[0]["answer"] == "2"
    both = tmp_path / "both"
    DatasetDict({"train": Dataset.from_dict({"prompt": ["a"]})}).save_to_disk(both)
    with pytest.raises(BoltInputError, match="a DatasetDict folder; give one split's folder"):
        load_prompt_file(both, "train")


def test_reasoning_gym_source_is_seeded_split_and_keeps_its_entries():
    task = TaskConfig(source="reasoning_gym:basic_arithmetic", train_prompts=30, heldout_prompts=10, seed=3)
    table, sources = read_prompts(task)
    again, _ = read_prompts(task)
    assert table.equals(again)
    rows = table.to_pylist()
    heldout = {r["prompt"] for r in rows if r["split"] == "heldout"}
    train = {r["prompt"] for r in rows if r["split"] == "train"}
    assert len(heldout) == 10 and len(train) >= 25 and not heldout & train
    entry = json.loads(rows[0]["metadata"])
    assert entry["dataset"] == "basic_arithmetic" and entry["entry"]["answer"] == rows[0]["answer"]
    assert task.verifier_name == "reasoning_gym"
    with pytest.raises(BoltInputError, match="reasoning_gym:no_such_generator"):
        read_prompts(TaskConfig(source="reasoning_gym:no_such_generator"))


def test_the_chat_template_renders_a_generation_prompt_and_a_system_turn():
    tokenizer = character_tokenizer()
    assert render_prompts(tokenizer, ["1+1="], "auto", None)[0] == ["1+1="]  # no template: plain
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}= {% endif %}")
    texts, ids = render_prompts(tokenizer, ["1+1"], "auto", "be brief")
    assert texts == ["be brief 1+1 = "] and ids[0] == tokenizer(texts[0], add_special_tokens=False).input_ids

    class Plain:  # a tokenizer without a template, that encodes any text
        chat_template = None

        def __call__(self, text):
            return type("Encoded", (), {"input_ids": [ord(c) for c in text]})

    assert render_prompts(Plain(), ["1+1"], "auto", "sys") == (["sys\n\n1+1"], [[ord(c) for c in "sys\n\n1+1"]])
    assert render_prompts(tokenizer, ["1+1"], "none", None)[0] == ["1+1"]  # the template declined


def test_chat_template_options_reach_the_template_and_the_rollouts_key():
    """Qwen3's template thinks unless enable_thinking is false: the option must reach it."""
    tokenizer = character_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if enable_thinking is defined and not enable_thinking %}"
                               "nothink {% endif %}")
    assert render_prompts(tokenizer, ["1+1"], "auto", None)[0] == ["1+1 "]
    assert render_prompts(tokenizer, ["1+1"], "auto", None, None,
                          {"enable_thinking": False})[0] == ["1+1 nothink "]
    task = TaskConfig(chat_template_options={"enable_thinking": False})
    assert task != TaskConfig()  # a field of the task: part of every stage's cache key
