"""Coverage thresholds and bad rewards in the weights SQL, against the numpy reference of
test_weights_sql.py."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.weights import write_weights
from test_weights_sql import arrow_tables, check_against_reference, hand_columns

# ----------------------------------------------------------------------------- coverage


def test_coverage_default_threshold_is_top_reward_of_table():
    columns = hand_columns(
        {"best": [0.1, 0.9], "tied": [0.9, 0.0], "near": [0.8999, 0.2], "low": [0.0]}
    )
    _, stats = check_against_reference(columns, 0.5)
    assert {p: s["covered"] for p, s in stats.items()} == {
        "best": True, "tied": True, "near": False, "low": False,
    }


def test_coverage_binary_rewards_default():
    columns = hand_columns({"right": [0, 0, 1], "wrong": [0, 0, 0], "all": [1, 1]})
    _, stats = check_against_reference(columns, 0.5)
    assert {p: s["covered"] for p, s in stats.items()} == {
        "right": True, "wrong": False, "all": True,
    }


def test_coverage_explicit_threshold():
    columns = hand_columns(
        {"best": [0.1, 0.9], "tied": [0.5, 0.0], "near": [0.4999, 0.2], "neg": [-3.0, -1.0]}
    )
    _, stats = check_against_reference(columns, 0.5, threshold=0.5)
    assert {p: s["covered"] for p, s in stats.items()} == {
        "best": True, "tied": True, "near": False, "neg": False,
    }
    # A threshold below every reward covers everything; above every reward covers nothing.
    _, stats = check_against_reference(columns, 0.5, threshold=-10.0)
    assert all(s["covered"] for s in stats.values())
    _, stats = check_against_reference(columns, 0.5, threshold=2.0)
    assert not any(s["covered"] for s in stats.values())
    # Threshold 0.0 is an explicit value, not "use the default".
    _, stats = check_against_reference(columns, 0.5, threshold=0.0)
    assert {p: s["covered"] for p, s in stats.items()} == {
        "best": True, "tied": True, "near": True, "neg": False,
    }


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_reward_raises_and_writes_nothing(tmp_path, bad_value):
    # Parquet min/max statistics leave NaN out (pyarrow writes min=-0.0, max=1.0 here), and
    # DuckDB's read_parquet defaults to can_have_nan=false, so it prunes the row group for
    # `isnan(reward)` using those statistics: the NaN case catches that the validation misses it.
    columns = hand_columns({"a": [0.0, 1.0, 0.5], "b": [1.0, 0.0]})
    columns["reward"][3] = bad_value  # 0-based row 3 of the file: prompt b, sample 0
    rollouts, rewards = arrow_tables(columns)  # unshuffled: file row 4 (1-based) is the bad one
    rollouts_path = tmp_path / "rollouts.parquet"
    rewards_path = tmp_path / "rewards.parquet"
    pq.write_table(rollouts, rollouts_path)
    pq.write_table(rewards, rewards_path)
    weights_path = tmp_path / "out" / "weights.parquet"
    stats_path = tmp_path / "out" / "prompt_stats.parquet"

    with pytest.raises(BoltInputError) as raised:
        write_weights(
            str(rollouts_path), str(rewards_path), WeightingConfig(beta=0.5, zero_information_keep=1.0),
            weights_path, stats_path,
        )
    message = str(raised.value)
    assert str(rewards_path) in message
    assert "row" in message and "reward" in message
    assert "row 4" in message, message
    assert not weights_path.exists()
    assert not stats_path.exists()
    leftovers = list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
    assert leftovers == []
