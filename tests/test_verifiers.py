"""A crashing or NaN-returning verifier becomes a recorded error, never a crashed round."""

import math

import pyarrow as pa
import pytest

from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.verifiers import arithmetic_verifier, resolve_verifier, score_rollouts


def crashing_verifier(prompt, answer, response, finish_reason):
    if response == "boom":
        raise RuntimeError("verifier exploded")
    if response == "nan":
        return math.nan
    return float(response == answer)


def test_arithmetic_verifier_requires_eos_and_exact_answer():
    assert arithmetic_verifier("07+85=", "092", "092", "stop") == 1.0
    assert arithmetic_verifier("07+85=", "092", "092", "length") == 0.0
    assert arithmetic_verifier("07+85=", "092", "92", "stop") == 0.0


def test_verifier_errors_are_recorded_with_fallback(tmp_path):
    prompts = pa.table({"prompt_id": ["p"], "prompt": ["1+1="], "answer": ["2"]})
    rollouts = pa.table({
        "prompt_id": ["p"] * 3, "sample_idx": pa.array([0, 1, 2], pa.int32()),
        "response": ["2", "boom", "nan"], "finish_reason": ["stop"] * 3,
    })
    ref = score_rollouts(prompts, rollouts, f"{__name__}:crashing_verifier", -1.0, tmp_path / "rw.parquet")
    rows = ref.read().to_pylist()
    assert [r["reward"] for r in rows] == [1.0, -1.0, -1.0]
    assert rows[0]["error"] is None
    assert rows[1]["error"] == "RuntimeError: verifier exploded"
    assert "non-finite" in rows[2]["error"]


def test_unknown_verifier_is_named():
    with pytest.raises(BoltInputError, match="task.verifier"):
        resolve_verifier("no_such_verifier")
