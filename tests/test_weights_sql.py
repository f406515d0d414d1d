"""The weights SQL (sql/log_tilt.sql, sql/weights.sql, sql/prompt_stats.sql,
sql/validate_rewards.sql) against an independent numpy implementation of docs/DESIGN.md section 1:

    l_i        = r_i/beta + log pi_ref(y_i|x) - log q(y_i|x)
    log w_i    = l_i - logsumexp_j(l_j) + log N
    log Zhat   = logsumexp_j(l_j) - log N
    ESS        = (sum_i w_i)^2 / sum_i w_i^2,   ess_fraction = ESS / N
    covered    = max_i r_i >= threshold (None: the top reward of the whole table)

The reference below uses only numpy and math; it shares no code with the project.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.stages.weights import compute_weights

RTOL = 1e-9
# Denominator floor of the relative error. Weights below ~1e-290 sit at the bottom of (or
# below) float64's normal range, where exp() of a log-weight that is right to 1e-12 can still
# differ in relative terms (subnormals carry fewer significant bits); such weights are zero
# for every practical purpose, so below this floor the comparison is an absolute one.
TINY = 1e-290
SEEDS = (0, 1, 2)
BETAS = (1e-4, 1e-2, 0.5, 1.0, 10.0)
REWARD_KINDS = ("uniform01", "uniform_pm5", "binary")


# ----------------------------------------------------------------------------- reference math


def _logsumexp(values: np.ndarray) -> float:
    """log sum exp, shifted by the max so exp() never sees a positive argument; exact sum."""
    top = float(np.max(values))
    return top + math.log(math.fsum(np.exp(values - top)))


def reference_weights(
    prompt_ids, sample_idx, reference_logprob, sampler_logprob, reward, beta, threshold=None
):
    """Per-row {key: (log_weight, weight, scale)} and per-prompt {prompt_id: stats dict}.

    `scale` is the magnitude of the inputs that enter a prompt's log-tilts:
    max_j (|r_j/beta| + |log pi_ref_j| + |log q_j|). It bounds the float64 rounding error of
    every l_j, hence the absolute error of log_weight and log_z (see _check_close).
    """
    prompt_ids = np.asarray(prompt_ids)
    reward = np.asarray(reward, dtype=np.float64)
    log_tilt = reward / beta + (
        np.asarray(reference_logprob, dtype=np.float64)
        - np.asarray(sampler_logprob, dtype=np.float64)
    )
    magnitude = (
        np.abs(reward / beta) + np.abs(reference_logprob) + np.abs(sampler_logprob)
    )
    top_reward = float(reward.max()) if threshold is None else float(threshold)
    rows, stats = {}, {}
    for prompt in np.unique(prompt_ids):
        mask = prompt_ids == prompt
        tilts = log_tilt[mask]
        n = int(mask.sum())
        lse = _logsumexp(tilts)
        log_weight = tilts - lse + math.log(n)
        weight = np.exp(log_weight)
        # ESS in log space, a different route from the SQL's sum(w)^2 / sum(w^2).
        ess = math.exp(2.0 * _logsumexp(log_weight) - _logsumexp(2.0 * log_weight))
        scale = float(magnitude[mask].max())
        for idx, lw, w in zip(np.asarray(sample_idx)[mask], log_weight, weight):
            rows[(str(prompt), int(idx))] = (float(lw), float(w), scale)
        stats[str(prompt)] = {
            "n": n,
            "mean_reward": math.fsum(reward[mask]) / n,
            "log_z": lse - math.log(n),
            "ess": ess,
            "ess_fraction": ess / n,
            "covered": bool(reward[mask].max() >= top_reward),
            "scale": scale,
            "reward_scale": float(np.abs(reward[mask]).max()),
        }
    return rows, stats


# ----------------------------------------------------------------------------- table builders


def make_tables(seed: int, reward_kind: str, same_sampler: bool):
    """Random rollouts and rewards: 9 prompts, N in 1..12 (N=1 always present), rows shuffled."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 8, 12] + list(rng.integers(1, 13, size=3))
    prompt_ids, sample_idx = [], []
    for p, n in enumerate(sizes):
        prompt_ids += [f"p{p:02d}"] * n
        sample_idx += list(range(n))
    total = len(prompt_ids)
    reference_logprob = -rng.uniform(0.0, 30.0, size=total)
    sampler_logprob = (
        reference_logprob.copy() if same_sampler else -rng.uniform(0.0, 30.0, size=total)
    )
    if reward_kind == "uniform01":
        reward = rng.uniform(0.0, 1.0, size=total)
    elif reward_kind == "uniform_pm5":
        reward = rng.uniform(-5.0, 5.0, size=total)
    else:
        reward = rng.integers(0, 2, size=total).astype(np.float64)
    columns = {
        "prompt_id": np.array(prompt_ids),
        "sample_idx": np.array(sample_idx, dtype=np.int32),
        "reference_logprob": reference_logprob,
        "sampler_logprob": sampler_logprob,
        "reward": reward,
    }
    return columns, *arrow_tables(columns, rng)


def arrow_tables(columns, rng=None):
    """(rollouts, rewards) Arrow tables; the rewards rows come in a different (shuffled) order."""
    rollouts = pa.table(
        {
            "prompt_id": pa.array(list(columns["prompt_id"]), pa.string()),
            "sample_idx": pa.array(columns["sample_idx"], pa.int32()),
            "reference_logprob": pa.array(columns["reference_logprob"], pa.float64()),
            "sampler_logprob": pa.array(columns["sampler_logprob"], pa.float64()),
            # Every stored response distinct: the support diagnostics have their own tests.
            "response_token_ids": pa.array(
                [[int(i)] for i in columns["sample_idx"]], pa.list_(pa.int32())
            ),
        }
    )
    order = np.arange(len(columns["reward"]))
    if rng is not None:
        order = rng.permutation(order)
    rewards = pa.table(
        {
            "prompt_id": pa.array([str(columns["prompt_id"][i]) for i in order], pa.string()),
            "sample_idx": pa.array(np.asarray(columns["sample_idx"])[order], pa.int32()),
            "reward": pa.array(np.asarray(columns["reward"], dtype=np.float64)[order], pa.float64()),
        }
    )
    return rollouts, rewards


def hand_columns(prompts: dict[str, list[float]], sampler_shift: dict[str, list[float]] | None = None):
    """Columns for hand-built cases: {prompt_id: rewards}, q = pi_ref unless shifted."""
    prompt_ids, sample_idx, reward, reference, sampler = [], [], [], [], []
    for prompt, rewards in prompts.items():
        for i, r in enumerate(rewards):
            prompt_ids.append(prompt)
            sample_idx.append(i)
            reward.append(float(r))
            reference.append(-3.0 - i)
            shift = 0.0 if sampler_shift is None else sampler_shift.get(prompt, [0.0] * 99)[i]
            sampler.append(-3.0 - i + shift)
    return {
        "prompt_id": np.array(prompt_ids),
        "sample_idx": np.array(sample_idx, dtype=np.int32),
        "reference_logprob": np.array(reference),
        "sampler_logprob": np.array(sampler),
        "reward": np.array(reward),
    }


def run_sql(columns, beta, threshold=None):
    rollouts, rewards = arrow_tables(columns, np.random.default_rng(99))
    # rho = 1: the reference weights every prompt (rho's own: tests/test_zero_information.py)
    config = WeightingConfig(beta=beta, success_threshold=threshold, zero_information_keep=1.0)
    weights, stats = compute_weights(rollouts, rewards, config)
    return weights.to_pylist(), {row["prompt_id"]: row for row in stats.to_pylist()}


# ----------------------------------------------------------------------------- comparisons


def _relative_error(actual: float, expected: float, scale: float = 0.0) -> float:
    """|a - b| / max(|b|, scale, TINY).

    scale = 0 gives the plain relative error. For log_weight (and log_z, mean_reward) the
    value can be near 0 while the numbers it is computed from are large: log w_i =
    l_i - logsumexp(l) + log N subtracts quantities of size |r/beta| (+ the log-probs), up to
    5e4 here, and float64 subtraction leaves an absolute error of ~eps * that size whatever
    the result is. A plain relative error against a result of, say, 1e-7 would then be
    ~1e-5 for a correct implementation, so the denominator is floored at that input
    magnitude: an abs/rel tolerance of 1e-9 * max(|value|, max|l-inputs|). A wrong formula
    (a missing log N, a wrong sign, a global instead of per-prompt normaliser) is off by
    O(1) and still fails.
    """
    return abs(actual - expected) / max(abs(expected), scale, TINY)


def assert_all_finite(weights_rows, stats_rows):
    for row in weights_rows:
        for key in ("reward", "log_weight", "weight"):
            assert row[key] is not None and math.isfinite(row[key]), (key, row)
    for row in stats_rows.values():
        for key in ("n", "mean_reward", "log_z", "ess", "ess_fraction"):
            assert row[key] is not None and math.isfinite(row[key]), (key, row)
        assert row["covered"] is not None


def check_against_reference(columns, beta, threshold=None, label=""):
    weights_rows, stats_rows = run_sql(columns, beta, threshold)
    ref_rows, ref_stats = reference_weights(
        columns["prompt_id"], columns["sample_idx"], columns["reference_logprob"],
        columns["sampler_logprob"], columns["reward"], beta, threshold,
    )
    assert len(weights_rows) == len(ref_rows)
    assert set(stats_rows) == set(ref_stats)
    assert_all_finite(weights_rows, stats_rows)

    reward_of = {
        (str(p), int(i)): float(r)
        for p, i, r in zip(columns["prompt_id"], columns["sample_idx"], columns["reward"])
    }
    worst = {"log_weight": 0.0, "weight": 0.0}
    per_prompt_weights: dict[str, list[float]] = {}
    for row in weights_rows:
        key = (row["prompt_id"], row["sample_idx"])
        log_weight, weight, scale = ref_rows[key]
        assert row["reward"] == reward_of[key]
        err_lw = _relative_error(row["log_weight"], log_weight, scale)
        err_w = _relative_error(row["weight"], weight)
        worst["log_weight"] = max(worst["log_weight"], err_lw)
        worst["weight"] = max(worst["weight"], err_w)
        assert err_lw <= RTOL, (label, key, row["log_weight"], log_weight, err_lw)
        assert err_w <= RTOL, (label, key, row["weight"], weight, err_w)
        per_prompt_weights.setdefault(row["prompt_id"], []).append(row["weight"])

    for prompt, expected in ref_stats.items():
        got = stats_rows[prompt]
        assert got["n"] == expected["n"], (label, prompt)
        assert got["covered"] == expected["covered"], (label, prompt, got, expected)
        for key, scale in (
            ("log_z", expected["scale"]),
            ("mean_reward", expected["reward_scale"]),
            ("ess", 0.0),
            ("ess_fraction", 0.0),
        ):
            err = _relative_error(got[key], expected[key], scale)
            assert err <= RTOL, (label, prompt, key, got[key], expected[key], err)
        # Invariants: weights average 1 per prompt; 1 <= ESS <= N.
        weights = per_prompt_weights[prompt]
        assert len(weights) == expected["n"]
        assert abs(math.fsum(weights) / len(weights) - 1.0) <= 1e-9, (label, prompt, weights)
        assert 1.0 - 1e-9 <= got["ess"] <= got["n"] * (1.0 + 1e-9), (label, prompt, got["ess"])
        assert 0.0 < got["ess_fraction"] <= 1.0 + 1e-9
    return weights_rows, stats_rows


# ----------------------------------------------------------------------------- random tables


@pytest.mark.parametrize("same_sampler", [True, False], ids=["q=pi_ref", "q!=pi_ref"])
@pytest.mark.parametrize("reward_kind", REWARD_KINDS)
@pytest.mark.parametrize("seed", [SEEDS[0], *(pytest.param(s, marks=pytest.mark.slow) for s in SEEDS[1:])])
def test_random_tables_match_numpy_reference(seed, reward_kind, same_sampler):
    columns, _, _ = make_tables(seed, reward_kind, same_sampler)
    assert 1 in np.unique(columns["prompt_id"], return_counts=True)[1]  # an N=1 prompt
    for beta in BETAS:
        check_against_reference(columns, beta, label=f"{seed}/{reward_kind}/beta={beta}")


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.8, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("reward_kind", REWARD_KINDS)
def test_random_tables_explicit_threshold(reward_kind, threshold):
    columns, _, _ = make_tables(7, reward_kind, same_sampler=False)
    check_against_reference(columns, 0.5, threshold=threshold, label=f"threshold={threshold}")


def test_parquet_paths_give_the_same_result_as_arrow_tables(tmp_path):
    columns, rollouts, rewards = make_tables(3, "uniform_pm5", same_sampler=False)
    pq.write_table(rollouts, tmp_path / "rollouts.parquet")
    pq.write_table(rewards, tmp_path / "rewards.parquet")
    config = WeightingConfig(beta=0.01)
    from_files = compute_weights(
        str(tmp_path / "rollouts.parquet"), str(tmp_path / "rewards.parquet"), config
    )
    from_tables = compute_weights(rollouts, rewards, config)
    assert from_files[0].equals(from_tables[0])
    assert from_files[1].equals(from_tables[1])


# ----------------------------------------------------------------------------- hand cases


def test_equal_rewards_give_ess_n_and_unit_weights():
    columns = hand_columns({"flat": [0.7] * 6, "flat_pm": [-4.0] * 3})
    for beta in BETAS:
        weights_rows, stats = check_against_reference(columns, beta)
        for row in weights_rows:
            assert abs(row["weight"] - 1.0) <= 1e-12
            assert abs(row["log_weight"]) <= 1e-12
        assert abs(stats["flat"]["ess"] - 6.0) <= 1e-12
        assert abs(stats["flat"]["ess_fraction"] - 1.0) <= 1e-12
        assert abs(stats["flat_pm"]["ess"] - 3.0) <= 1e-12
        # log Zhat = logsumexp(r/beta) - log N = r/beta for equal rewards.
        assert _relative_error(stats["flat"]["log_z"], 0.7 / beta) <= 1e-12
        assert _relative_error(stats["flat_pm"]["log_z"], -4.0 / beta) <= 1e-12


def test_two_sample_closed_form():
    # rewards (0, 1), beta = 1, q = pi_ref: w = 2 (1, e) / (1 + e).
    columns = hand_columns({"a": [0.0, 1.0]})
    weights_rows, stats = check_against_reference(columns, 1.0)
    e = math.e
    assert _relative_error(weights_rows[0]["weight"], 2.0 / (1.0 + e)) <= 1e-12
    assert _relative_error(weights_rows[1]["weight"], 2.0 * e / (1.0 + e)) <= 1e-12
    assert _relative_error(stats["a"]["log_z"], math.log((1.0 + e) / 2.0)) <= 1e-12
    assert _relative_error(stats["a"]["ess"], (1.0 + e) ** 2 / (1.0 + e * e)) <= 1e-12
    assert stats["a"]["mean_reward"] == 0.5


def test_importance_correction_closed_form():
    # rewards equal, q != pi_ref: l_i = log pi_ref_i - log q_i = -shift_i.
    # shifts (0, ln 3): l = (0, -ln 3) -> w proportional to (1, 1/3), mean 1 -> (1.5, 0.5).
    columns = hand_columns({"a": [1.0, 1.0]}, sampler_shift={"a": [0.0, math.log(3.0)]})
    weights_rows, stats = check_against_reference(columns, 0.5)
    assert _relative_error(weights_rows[0]["weight"], 1.5) <= 1e-12
    assert _relative_error(weights_rows[1]["weight"], 0.5) <= 1e-12
    # ESS = 2^2 / (1.5^2 + 0.5^2) = 1.6; log Zhat = 1/0.5 + log((1 + 1/3)/2).
    assert _relative_error(stats["a"]["ess"], 1.6) <= 1e-12
    assert _relative_error(stats["a"]["log_z"], 2.0 + math.log(2.0 / 3.0)) <= 1e-12


def test_dominant_reward_at_small_beta_gives_ess_near_one():
    columns = hand_columns({"dom": [1.0, 0.0, 0.0, 0.2, 0.1, 0.0, 0.0, 0.0]})
    weights_rows, stats = check_against_reference(columns, 0.01)
    # The winner's weight is N / (1 + sum_j exp((r_j - 1)/beta)) ~ 8 (1 - e^-80).
    assert abs(stats["dom"]["ess"] - 1.0) <= 1e-12
    assert abs(stats["dom"]["ess_fraction"] - 1.0 / 8.0) <= 1e-12
    assert abs(weights_rows[0]["weight"] - 8.0) <= 1e-12
    assert all(row["weight"] < 1e-30 for row in weights_rows[1:])
    # At a large beta the same prompt is near uniform.
    _, stats = check_against_reference(columns, 100.0)
    assert stats["dom"]["ess"] > 7.9


def test_tiny_beta_with_large_rewards_does_not_overflow():
    # beta = 1e-4: r/beta = +-5e4; exp(5e4) would be inf, so only max-shifted exps work.
    columns = hand_columns({"big": [-5.0, 5.0, 5.0, -5.0, 0.0], "neg": [-5.0, -5.0, -4.99]})
    weights_rows, stats = check_against_reference(columns, 1e-4)
    big = [row["weight"] for row in weights_rows if row["prompt_id"] == "big"]
    assert big == [0.0, 2.5, 2.5, 0.0, 0.0]
    assert abs(stats["big"]["ess"] - 2.0) <= 1e-12
    assert _relative_error(stats["big"]["log_z"], 5e4 + math.log(2.0 / 5.0)) <= 1e-12
    # All rewards very negative: exp(-5e4) would underflow to 0 and log(0) = -inf.
    # l = (-5e4, -5e4, -4.99e4): the last weight is 3 / (1 + 2 e^-100) = 3 to float64.
    neg = [row["weight"] for row in weights_rows if row["prompt_id"] == "neg"]
    assert neg[2] == pytest.approx(3.0, rel=1e-12)
    assert neg[0] == pytest.approx(3.0 * math.exp(-100.0), rel=1e-9)
    assert _relative_error(stats["neg"]["log_z"], -4.99e4 - math.log(3.0), 5e4) <= 1e-12


def test_single_sample_prompt_has_weight_one():
    columns = hand_columns({"one": [3.0]}, sampler_shift={"one": [-7.0]})
    weights_rows, stats = check_against_reference(columns, 1e-2)
    assert weights_rows[0]["weight"] == 1.0 and weights_rows[0]["log_weight"] == 0.0
    assert stats["one"]["ess"] == 1.0 and stats["one"]["n"] == 1
    assert _relative_error(stats["one"]["log_z"], 300.0 + 7.0) <= 1e-12


def test_sums_are_exact_where_a_float_sum_is_not():
    """The SQL's sums are exact integer sums (sql/exact_sum_macro.sql): 1e6 + 1e-3 - 1e6 summed in
    float64 loses the 1e-3's digits from the 8th on (order-dependent); here all survive."""
    columns = hand_columns({"cancel": [1e6, 1e-3, -1e6]})
    _, stats = run_sql(columns, 0.5)
    assert _relative_error(stats["cancel"]["mean_reward"], 1e-3 / 3) <= 1e-15
    assert abs(((1e6 + 1e-3) - 1e6) / 3 - 1e-3 / 3) > 1e-12  # what float summation gives


def test_weights_and_prompt_stats_sum_only_through_the_exact_sum_macro():
    """One definition of the exact sum: no float sum() and no hand-written fixed-point sum in
    the weights' SQL, and the macro defines the fixed point."""
    sql = Path(__file__).resolve().parents[1] / "sql"
    macro = (sql / "exact_sum_macro.sql").read_text()
    assert "HUGEINT" in macro and "pow(2, 96)" in macro
    for name in ("weights.sql", "prompt_stats.sql"):
        code = "\n".join(line.split("--")[0] for line in (sql / name).read_text().splitlines())
        assert "exact_sum(" in code, name
        assert not re.search(r"(?<![a-z_])(sum|avg)\(", code), name
        assert "HUGEINT" not in code and "pow(2, 96)" not in code, name


def test_target_success_keeps_successes_far_below_the_top_weight():
    """A success whose weight is e^-100 of the prompt's top one (an importance ratio), far below
    the 2^-96 resolution of a sum scaled by the top weight: summed on its own scale."""
    columns = hand_columns({"far": [1.0, 0.0, 0.0]}, sampler_shift={"far": [100.0, 0.0, 0.0]})
    rollouts, rewards = arrow_tables(columns, np.random.default_rng(1))
    _, stats = compute_weights(rollouts, rewards, WeightingConfig(beta=1.0, success_threshold=1.0))
    log_tilt = columns["reward"] / 1.0 + columns["reference_logprob"] - columns["sampler_logprob"]
    expected = math.exp(log_tilt[0] - _logsumexp(log_tilt))
    assert 1e-45 < expected < 1e-40
    assert _relative_error(stats.to_pylist()[0]["target_success"], expected) <= 1e-12
