"""Hostile input through the real CLI, in a process of its own: each bad input is refused before
any Prefect server starts, with one line on stderr naming file, row and field, exit code 2,
nothing written, nothing left running."""

import json
from pathlib import Path

import pytest

from cli_runs import bolt, own_server_env

pytestmark = pytest.mark.usefixtures("no_process_left")

GOOD = {"prompt": "12+34=", "answer": "046"}


def jsonl(path: Path, *records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def user_files(tmp_path, *train_records, name="train.jsonl"):
    train = jsonl(tmp_path / name, *train_records)
    heldout = jsonl(tmp_path / "heldout.jsonl", {"prompt": "55+11=", "answer": "066"})
    return ["--prompts", str(train), "--heldout", str(heldout)]


def verifier_module(tmp_path, source: str) -> None:
    (tmp_path / "user_verifier.py").write_text(source)


CASES = {
    # prompt files
    "malformed JSON": (lambda t: user_files(t, GOOD, '{"prompt": "1+1=", "answer" "2"}'),
                       "train.jsonl line 2: malformed JSON"),
    "JSON array in a .json file": (
        lambda t: user_files(t, json.dumps([GOOD]), name="train.json"),
        "train.json line 1: a JSON array; prompt files are JSON Lines"),
    "missing field": (lambda t: user_files(t, GOOD, {"prompt": "1+1="}),
                      "train.jsonl line 2: missing field 'answer'"),
    "not UTF-8": (lambda t: user_files(t, GOOD) + ["--prompts", str(_latin1(t))],
                  "latin1.jsonl line 2: not UTF-8 (byte 0xe9)"),
    "a directory as prompt file": (lambda t: user_files(t, GOOD) + ["--prompts", str(t)],
                                   "is a directory, not a prompt file"),
    "characters the tokenizer cannot encode": (
        lambda t: user_files(t, GOOD, {"prompt": "What is 2+2?", "answer": "4"}),
        "train.jsonl line 2: field 'prompt' cannot be tokenized by the reference policy's "
        "tokenizer (characters it cannot encode: '?', 'W')"),
    "a NUL byte": (lambda t: user_files(t, {"prompt": "1+1=\u0000", "answer": "2"}),
                   "train.jsonl line 1: field 'prompt' cannot be tokenized"),
    "a 100,000-character prompt": (
        lambda t: user_files(t, {"prompt": "1" * 100_000, "answer": "2"}),
        "train.jsonl line 1: field 'prompt' has 100,000 characters, above task.max_prompt_chars=20,000"),
    "a prompt longer than the model's context": (
        lambda t: user_files(t, GOOD, {"prompt": "1+" * 40 + "=", "answer": "2"}),
        "train.jsonl line 2: field 'prompt' is 82 tokens; with up to 5 new tokens it does not fit "
        "the reference model's context of 64 tokens"),
    "a path with markup characters": (
        lambda t: user_files(t / "[v2]", '{"prompt": '),
        "[v2]/train.jsonl line 1: malformed JSON"),
    # the new sources
    "a mapped prompt column the file does not have": (
        lambda t: user_files(t, GOOD) + ["--set", "task.prompt_field=question"],
        "train.jsonl line 1: missing field 'question'"),
    "held-out prompts that repeat training ones, read from a mapped field": (
        lambda t: ["--prompts", str(jsonl(t / "train.jsonl", {"question": "1+1=", "answer": "2"},
                                          {"question": "12+34=", "answer": "046"})),
                   "--heldout", str(jsonl(t / "heldout.jsonl", {"question": "9+9=", "answer": "18"},
                                          {"question": "12+34=", "answer": "046"})),
                   "--set", "task.prompt_field=question"],
        "heldout.jsonl line 2: field 'question' repeats a training prompt ("),
    "a prompt longer than the model's context, read from a mapped field": (
        lambda t: ["--prompts", str(jsonl(t / "train.jsonl", {"question": "1+" * 40 + "=", "answer": "2"})),
                   "--heldout", str(jsonl(t / "heldout.jsonl", {"question": "9+9=", "answer": "18"})),
                   "--set", "task.prompt_field=question"],
        "train.jsonl line 1: field 'question' is 82 tokens"),
    "a chat row without a user turn": (
        lambda t: user_files(t, {"messages": [{"role": "assistant", "content": "hi"}], "answer": "1"}),
        "train.jsonl line 1: field 'messages' has no user turn"),
    # a field of the wrong JSON or Parquet type
    "a number as the prompt": (lambda t: user_files(t, GOOD, {"prompt": 12, "answer": "046"}),
                               "train.jsonl line 2: field 'prompt' must be a string, not a number (12)"),
    "a list as the answer": (lambda t: user_files(t, GOOD, {"prompt": "1+1=", "answer": ["002"]}),
                             "train.jsonl line 2: field 'answer' must be a string, not a list"),
    "an object as the prompt": (lambda t: user_files(t, {"prompt": {"text": "1+1="}, "answer": "2"}),
                                "train.jsonl line 1: field 'prompt' must be a string, not an object"),
    "a boolean as the answer": (lambda t: user_files(t, {"prompt": "1+1=", "answer": True}),
                                "train.jsonl line 1: field 'answer' must be a string, not a boolean"),
    "a Parquet column of numbers as the answer": (
        lambda t: user_files(t, GOOD) + ["--prompts", str(_parquet(t, {"prompt": ["1+1="], "answer": [2]}))],
        "train.parquet row 1: field 'answer' must be a string, not a number (2)"),
    "a Parquet column of lists as the prompt": (
        lambda t: user_files(t, GOOD) + ["--prompts", str(_parquet(t, {"prompt": [["1+1="]], "answer": ["2"]}))],
        "train.parquet row 1: field 'prompt' must be a string, not a list"),
    "a worked solution without a final value": (
        lambda t: user_files(t, {"prompt": "1+1=", "answer": "it is two"}) + ["--set", "task.answer_format=gsm8k"],
        "train.jsonl line 1: field 'answer' has no final value for answer_format 'gsm8k'"),
    "an unknown reasoning-gym generator": (
        lambda t: ["--set", "task.source=reasoning_gym:no_such_generator"],
        "field 'task.source': reasoning_gym:no_such_generator"),
    # configuration
    "beta too small for r/beta": (lambda t: ["--beta", "1e-310"],
                                  "field 'weighting.beta': beta must be a finite number in [1e-06, 1e+06]"),
    "more prompts than the built-in task has": (
        lambda t: ["--train-prompts", "20000"], "the built-in task has 10,000 prompts"),
    "pipeline '..'": (lambda t: ["--pipeline", ".."], "field 'pipeline': a pipeline name is a directory name"),
    "pipeline '[/x]'": (lambda t: ["--pipeline", "[/x]"], "(got '[/x]')"),
    "a field set inside a number": (lambda t: ["--set", "task=5", "--set", "task.seed=1"],
                                    "--set task.seed=1: field 'task' was set to 5, not a group of fields"),
    "a --config that is a JSON list": (lambda t: ["--config", str(jsonl(t / "c.json", "[1, 2]"))],
                                       "c.json: a configuration is one JSON object of fields, not a list"),
    "refresh --add-rounds 0": (lambda t: ["--add-rounds", "0"],
                               "invalid refresh options: field 'add_rounds': Input should be greater than or equal to 1"),
    # the verifier
    "a verifier that cannot be imported": (
        lambda t: ["--set", "task.verifier=no_such_module:verify"],
        "field 'task.verifier': cannot import 'no_such_module:verify'"),
    "a verifier module with a syntax error": (
        lambda t: verifier_module(t, "def verify(p, a, r, f)\n    return 1\n")
        or ["--set", "task.verifier=user_verifier:verify"],
        "user_verifier.py line 1: syntax error"),
    "a verifier with the wrong signature": (
        lambda t: verifier_module(t, "def verify(response):\n    return 1.0\n")
        or ["--set", "task.verifier=user_verifier:verify"],
        "user_verifier:verify(response) cannot be called as f(prompt, answer, response, finish_reason)"),
    # the runs directory
    "a runs directory that cannot be written": (
        lambda t: ["--runs-dir", str(jsonl(t / "a-file", "x") / "runs")],
        "the runs directory cannot be written (Not a directory)"),
}


def _parquet(tmp_path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def _latin1(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"prompt": "caf\xe9\xff", "answer": "1"}\n')
    return path


@pytest.mark.slow  # a `bolt` process per case: 35 cases, 15-20 s in all
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_before_anything_starts(tmp_path, case):
    make_arguments, message = CASES[case]
    arguments = make_arguments(tmp_path)
    command = "refresh" if case.startswith("refresh") else "run"
    if "--runs-dir" not in arguments:
        arguments += ["--runs-dir", str(tmp_path / "runs")]
    result = bolt(command, *arguments, cwd=tmp_path, env=own_server_env())
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert 1 <= len(lines) <= 3 and lines[0].startswith("error: "), lines
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Starting temporary Prefect server" not in result.stdout  # refused before Prefect
    assert not (tmp_path / "runs").exists()  # nothing written, nothing claimed


def test_files_with_a_byte_order_mark_crlf_line_ends_and_blank_lines_are_read(tmp_path):
    """Windows-saved files: UTF-8 with BOM (.jsonl and .json), CRLF, blank lines. The CLI reads
    both files whole, then refuses their one shared prompt, quoting it and its lines as read."""
    train = tmp_path / "train.jsonl"
    lines = [json.dumps(GOOD | {"prompt": "11+11="}), "", json.dumps(GOOD), ""]
    train.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    heldout = tmp_path / "heldout.json"
    heldout.write_bytes(b"\xef\xbb\xbf\r\n\r\n" + json.dumps(GOOD).encode() + b"\r\n")
    result = bolt("run", "--prompts", str(train), "--heldout", str(heldout),
                  "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, env=own_server_env())
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"{heldout} line 3: field 'prompt' repeats a training prompt ({train} line 3): '12+34='"
            in " ".join(result.stderr.split())), result.stderr
    assert not (tmp_path / "runs").exists()


def test_generated_ids_of_two_files_with_one_name_do_not_collide(tmp_path):
    from bolt_tasks.core.config import TaskConfig
    from bolt_tasks.stages.prompt_files import build_prompts

    train = jsonl(tmp_path / "train" / "data.jsonl", GOOD)
    heldout = jsonl(tmp_path / "heldout" / "data.jsonl", {"prompt": "55+11=", "answer": "066"})
    table = build_prompts(TaskConfig(prompts_file=train, heldout_file=heldout))
    assert table["prompt_id"].to_pylist() == ["train-1", "heldout-1"]


def test_tables_are_readable_by_everyone_who_can_read_the_directory(tmp_path):
    import pyarrow as pa

    from bolt_tasks.core.storage import FILE_MODE, write_table_atomic

    ref = write_table_atomic(pa.table({"x": [1]}), tmp_path / "t.parquet")
    assert Path(ref.path).stat().st_mode & 0o777 == FILE_MODE
    assert FILE_MODE & 0o044  # group and others may read (umask 022 here)


def test_a_full_disk_while_saving_a_policy_leaves_no_temporary_checkpoint(tmp_path, tiny_policy):
    from bolt_tasks.policy.modeling import save_policy_atomic

    model, tokenizer = tiny_policy

    class FullDisk:
        def save_pretrained(self, directory):
            Path(directory).mkdir()
            (Path(directory) / "model.safetensors").write_bytes(b"half")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"policy: cannot save the policy \(OSError: \[Errno 28\] No space"):
        save_policy_atomic(FullDisk(), tokenizer, tmp_path / "policy")
    assert list(tmp_path.iterdir()) == []
