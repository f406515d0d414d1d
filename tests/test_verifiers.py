"""A verifier that raises, hangs, dies or returns something that is not a reward becomes a
recorded error per response, never a crashed or hung round; past the allowed share of errors
the round stops with one sentence; errored responses never count as successes."""

import math
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest

from bolt_tasks.core.config import TaskConfig, WeightingConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.verifier_pool import score_in_workers
from bolt_tasks.stages.verifier_registry import arithmetic_verifier, as_reward, resolve_verifier
from bolt_tasks.stages.verifiers import score_rollouts, verifier_code
from bolt_tasks.stages.weights import compute_weights

HOSTILE = textwrap.dedent('''
    import math, os, time

    def verify(prompt, answer, response, finish_reason):
        if response == "boom":
            raise RuntimeError("verifier exploded")
        if response == "nan":
            return math.nan
        if response == "text":
            return "1"
        if response == "huge":
            return 1e308
        if response == "exit":
            os._exit(7)
        if response == "hang":
            time.sleep(3600)
        print("a verifier that prints")
        return float(response == answer)

    def two_arguments(prompt, response):
        return 1.0
''')


@pytest.fixture
def hostile_module(tmp_path, monkeypatch):
    (tmp_path / "hostile_verifier.py").write_text(HOSTILE)
    (tmp_path / "broken_verifier.py").write_text("def verify(p, a, r, f)\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("hostile_verifier", "broken_verifier"):  # imported by an earlier test's copy
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_arithmetic_verifier_requires_eos_and_exact_answer():
    assert arithmetic_verifier("07+85=", "092", "092", "stop") == 1.0
    assert arithmetic_verifier("07+85=", "092", "092", "length") == 0.0
    assert arithmetic_verifier("07+85=", "092", "92", "stop") == 0.0


@pytest.mark.parametrize("value, reward, error", [
    (1.0, 1.0, None), (True, 1.0, None), (np.float32(0.5), 0.5, None), (-3, -3.0, None),
    ("1", None, "verifier returned str '1', not a number"), (None, None, "NoneType"),
    (math.nan, None, "non-finite"), (math.inf, None, "non-finite"), (1e308, None, "outside"),
])
def test_only_finite_numbers_in_range_are_rewards(value, reward, error):
    got_reward, got_error = as_reward(value)
    assert got_reward == reward
    assert (got_error is None) if error is None else (error in got_error)


def test_bad_verifier_names_are_one_sentence_each(hostile_module):
    cases = {
        "no_such_verifier": "unknown verifier 'no_such_verifier'",
        "no_such_module:f": "cannot import 'no_such_module:f'",
        "hostile_verifier:missing": "cannot import 'hostile_verifier:missing'",
        "hostile_verifier:math": "is a module, not a function",
        "hostile_verifier:two_arguments": "two_arguments(prompt, response) cannot be called as "
                                          "f(prompt, answer, response, finish_reason)",
        "broken_verifier:verify": "broken_verifier.py line 1: syntax error",
    }
    for name, message in cases.items():
        with pytest.raises(BoltInputError, match="field 'task.verifier'") as raised:
            resolve_verifier(name)
        assert message in str(raised.value), (name, str(raised.value))


def rollouts_of(responses):
    prompts = pa.table({"prompt_id": ["p"], "prompt": ["1+1="], "answer": ["2"]})
    rollouts = pa.table({
        "prompt_id": ["p"] * len(responses), "sample_idx": pa.array(range(len(responses)), pa.int32()),
        "response": responses, "finish_reason": ["stop"] * len(responses),
    })
    return prompts, rollouts


def test_every_failure_is_recorded_per_response(hostile_module, tmp_path):
    task = TaskConfig(verifier="hostile_verifier:verify", verifier_fallback_reward=-1.0,
                      verifier_timeout_s=1.0, max_verifier_error_share=1.0)
    responses = ["2", "boom", "nan", "text", "huge", "exit", "hang", "3", "2"]
    rows = score_rollouts(*rollouts_of(responses), task, tmp_path / "rewards.parquet").read().to_pylist()
    assert [r["reward"] for r in rows] == [1.0, -1, -1, -1, -1, -1, -1, 0.0, 1.0]
    errors = [r["error"] for r in rows]
    assert errors[0] is None and errors[7] is None and errors[8] is None
    assert errors[1] == "RuntimeError: verifier exploded"
    assert "non-finite" in errors[2] and "str '1', not a number" in errors[3]
    assert "outside" in errors[4]
    assert errors[5] == "verifier process died (exit code 7) while scoring this response"
    assert errors[6] == "verifier timed out after 1 s"


def test_too_many_errors_stop_the_stage_naming_the_first_and_the_table(hostile_module, tmp_path):
    task = TaskConfig(verifier="hostile_verifier:verify", max_verifier_error_share=0.25)
    out = tmp_path / "rewards.parquet"
    with pytest.raises(BoltInputError) as raised:
        score_rollouts(*rollouts_of(["2", "boom", "nan", "2"]), task, out)
    message = str(raised.value)
    assert "could not score 2 of 4 responses (50.0%, above task.max_verifier_error_share=0.25)" in message
    assert "first, prompt 'p' sample 1: RuntimeError: verifier exploded" in message
    assert str(out) in message and out.exists()


def test_a_hanging_verifier_costs_its_time_limit_per_response(hostile_module):
    items = [("1+1=", "2", "hang", "stop")] * 8
    start = time.monotonic()
    results = score_in_workers("hostile_verifier:verify", items, 0.5, 4, "verify")
    elapsed = time.monotonic() - start
    assert results == [(None, "verifier timed out after 0.5 s")] * 8
    assert elapsed < 0.5 * 8 / 4 + 10, elapsed  # the acceptance bound: limit x responses / workers


def test_the_verifier_module_and_its_declared_files_are_its_code(hostile_module):
    module = hostile_module / "hostile_verifier.py"
    (hostile_module / "answers.json").write_text("{}")
    module.write_text(HOSTILE + '\nBOLT_VERIFIER_FILES = ["answers.json"]\n')
    before = verifier_code("hostile_verifier:verify")
    assert set(before) == {str(module), str(hostile_module / "answers.json")}
    (hostile_module / "answers.json").write_text('{"changed": true}')
    assert verifier_code("hostile_verifier:verify") != before
    assert verifier_code("arithmetic") == {}


def test_an_errored_response_is_never_a_success_for_coverage():
    # One prompt whose only reward-1 response errored (its fallback reward 1 is not a success).
    rollouts = pa.table({
        "prompt_id": ["a", "a", "b", "b"], "sample_idx": pa.array([0, 1, 0, 1], pa.int32()),
        "reference_logprob": [-1.0] * 4, "sampler_logprob": [-1.0] * 4,
        "response_token_ids": pa.array([[1], [2], [1], [2]], pa.list_(pa.int32())),
    })
    rewards = pa.table({
        "prompt_id": ["a", "a", "b", "b"], "sample_idx": pa.array([0, 1, 0, 1], pa.int32()),
        "reward": [1.0, 0.0, 1.0, 0.0], "error": ["TimeoutError", None, None, None],
    })
    _, stats = compute_weights(rollouts, rewards, WeightingConfig(beta=0.5, success_threshold=1.0))
    covered = dict(zip(stats["prompt_id"].to_pylist(), stats["covered"].to_pylist()))
    assert covered == {"a": False, "b": True}
    target = dict(zip(stats["prompt_id"].to_pylist(), stats["target_success"].to_pylist()))
    assert target["a"] == 0.0 and target["b"] > 0.5
