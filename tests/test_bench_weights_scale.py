"""bench/weights_scale.py compares the SQL weights with a numpy and a pandas implementation at
10M rollouts; its figures mean something only if those compute the same numbers. Here they are
checked against the SQL on a small table of the benchmark's own generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "weights_scale.py"


@pytest.fixture(scope="module")
def weights_scale():
    spec = importlib.util.spec_from_file_location("weights_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("implementation", ["numpy_weights", "pandas_weights"])
def test_the_benchmark_baselines_compute_the_sql_numbers(weights_scale, implementation, tmp_path):
    paths = weights_scale.write_rollouts(3_000, tmp_path, seed=3)
    weights_scale.sql_weights(*paths, memory_limit=None)
    sql = weights_scale.sql_numbers(tmp_path)
    theirs = getattr(weights_scale, implementation)(*paths)
    assert len(sql["weight"]) == 3_000 * weights_scale.SAMPLES
    assert set(theirs) == set(sql)
    for name in sql:
        if name == "prompt_id":
            assert list(np.asarray(theirs[name], dtype=object)) == sql[name].to_pylist()
            continue
        np.testing.assert_allclose(np.asarray(theirs[name], float), np.asarray(sql[name], float),
                                   rtol=1e-9, atol=1e-12, err_msg=name)
    # the generated table has what the statistics are about: repeated responses, and prompts
    # with and without a success
    assert sql["distinct_responses"].mean() < weights_scale.SAMPLES
    assert 0 < sql["covered"].mean() < 1
