"""Every weighting scheme of docs/DESIGN.md section 1 against an independent numpy reference, the
per-prompt diagnostics on hand-computed cases, and the exactness test: weighted maximum
likelihood on a tabular softmax policy lands on the policy each scheme induces, and only
bolt (and boltzmann_global, when the sampler is pi_ref) lands on the Boltzmann target

    pi*(y|x) = pi_ref(y|x) exp(r(x,y)/beta) / Z(x).

Scheme log-weights s_i before normalisation (docs/DESIGN.md, the table of schemes):
    bolt              r/beta + log pi_ref - log q     normalised per prompt (mean 1 per prompt)
    boltzmann_global  r/beta                          normalised by one global mean
    rft               0 if r >= rft_threshold else -inf
    reward            log r  (r >= 0; log 0 = -inf)
    sft               0

The reference below uses only numpy, math and torch; it shares no code with the project.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.stages.weights import compute_weights

SCHEMES = ("bolt", "boltzmann_global", "rft", "reward", "sft")
RTOL = 1e-9
# Floor of the relative-error denominator: below it float64 is subnormal and exp() of a
# log-weight that is right to 1e-12 may still differ in relative terms (fewer bits).
TINY = 1e-290
NEG_INF = float("-inf")


# ----------------------------------------------------------------------------- reference math


def _lse(values) -> float:
    """log sum exp, max-shifted, exact sum; -inf for an empty or all -inf input."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).any():
        return NEG_INF
    top = float(np.max(values))
    return top + math.log(math.fsum(np.exp(values - top)))


def scheme_log_weights(scheme, reward, reference_logprob, sampler_logprob, prompt_ids, beta,
                       rft_threshold):
    """(log-weights, per-row magnitude of the inputs that enter them) for one scheme."""
    reward = np.asarray(reward, dtype=np.float64)
    n_rows = reward.size
    if scheme in ("bolt", "boltzmann_global"):
        raw = reward / beta
        magnitude = np.abs(raw)
        if scheme == "bolt":
            raw = raw + (reference_logprob - sampler_logprob)
            magnitude = magnitude + np.abs(reference_logprob) + np.abs(sampler_logprob)
        groups = (
            [prompt_ids == p for p in np.unique(prompt_ids)] if scheme == "bolt"
            else [np.ones(n_rows, dtype=bool)]
        )
        log_weight = np.empty(n_rows)
        scale = np.empty(n_rows)
        for mask in groups:
            log_weight[mask] = raw[mask] - _lse(raw[mask]) + math.log(int(mask.sum()))
            scale[mask] = float(magnitude[mask].max())
        return log_weight, scale
    if scheme == "rft":
        return np.where(reward >= rft_threshold, 0.0, NEG_INF), np.zeros(n_rows)
    if scheme == "reward":
        assert (reward >= 0).all()
        with np.errstate(divide="ignore"):
            log_weight = np.where(reward > 0, np.log(np.where(reward > 0, reward, 1.0)), NEG_INF)
        return log_weight, np.zeros(n_rows)
    if scheme == "sft":
        return np.zeros(n_rows), np.zeros(n_rows)
    raise ValueError(scheme)


def reference(columns, scheme, beta, rft_threshold=1.0, success_threshold=None):
    """Per-row {key: (log_weight, weight, scale)} and per-prompt {prompt_id: stats}."""
    prompt_ids = np.asarray(columns["prompt_id"])
    reward = np.asarray(columns["reward"], dtype=np.float64)
    ref_lp = np.asarray(columns["reference_logprob"], dtype=np.float64)
    q_lp = np.asarray(columns["sampler_logprob"], dtype=np.float64)
    log_weight, scale = scheme_log_weights(
        scheme, reward, ref_lp, q_lp, prompt_ids, beta, rft_threshold
    )
    weight = np.exp(log_weight)
    rows = {
        (str(p), int(i)): (float(lw), float(w), float(s))
        for p, i, lw, w, s in zip(prompt_ids, columns["sample_idx"], log_weight, weight, scale)
    }
    threshold = float(reward.max()) if success_threshold is None else float(success_threshold)
    log_tilt = reward / beta + ref_lp - q_lp
    tilt_scale = np.abs(reward / beta) + np.abs(ref_lp) + np.abs(q_lp)
    stats = {}
    for prompt in np.unique(prompt_ids):
        mask = prompt_ids == prompt
        n = int(mask.sum())
        lw = log_weight[mask]
        # ESS and target_success in log space (scale-invariant, a different route from
        # sum(w)^2 / sum(w^2)); 0 / None exactly when every weight is 0 (log-weight -inf),
        # not when positive weights merely underflow float64.
        all_zero = bool(np.all(np.isneginf(lw)))
        ess = 0.0 if all_zero else math.exp(2.0 * _lse(lw) - _lse(2.0 * lw))
        success = reward[mask] >= threshold
        if all_zero:
            target_success = None
        else:
            target_success = math.exp(_lse(lw[success]) - _lse(lw)) if success.any() else 0.0
        log_z = _lse(log_tilt[mask]) - math.log(n)
        # Distinct responses: a response is its token-id tuple, within this prompt.
        distinct = {}
        for tokens, lp, r in zip(
            np.asarray(columns["response_token_ids"], dtype=object)[mask], ref_lp[mask],
            reward[mask],
        ):
            distinct.setdefault(tuple(tokens), lp + r / beta)
        log_mass = _lse(list(distinct.values())) - log_z
        stats[str(prompt)] = {
            "n": n,
            "mean_reward": math.fsum(reward[mask]) / n,
            "log_z": log_z,
            "ess": ess,
            "ess_fraction": ess / n,
            "covered": bool(reward[mask].max() >= threshold),
            "target_success": target_success,
            "distinct_responses": len(distinct),
            "log_support_mass": log_mass,
            "support_mass": math.exp(log_mass),
            "support_price": -beta * log_mass,
            "scale": float(tilt_scale[mask].max()),
        }
    return rows, stats


def _relative_error(actual: float, expected: float, scale: float = 0.0) -> float:
    """|a - b| / max(|b|, scale, TINY): a combined abs/rel tolerance. Log values computed from
    inputs of size `scale` carry an absolute rounding error ~eps*scale whatever their size."""
    return abs(actual - expected) / max(abs(expected), scale, TINY)


# ----------------------------------------------------------------------------- table builders


def random_columns(seed: int, reward_kind: str):
    """9 prompts, N in 1..12 (N=1 present). Each prompt samples from its own small pool of
    answers, so responses repeat (the support diagnostics count them once); the same token
    ids are reused across prompts, and one answer is the empty response."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 8, 12] + list(rng.integers(1, 13, size=3))
    token_pool = [[], [7], [7, 7], [3, 1, 4], [1, 5, 9, 2], [6], [5, 3], [8, 9, 7, 9, 3], [3, 5],
                  [4, 1, 3], [2], [7, 1]]
    columns = {k: [] for k in (
        "prompt_id", "sample_idx", "reference_logprob", "sampler_logprob", "reward",
        "response_token_ids",
    )}
    for p, n in enumerate(sizes):
        pool_size = int(rng.integers(1, n + 1))
        answers = rng.choice(len(token_pool), size=pool_size, replace=False)
        ref_lp = -rng.uniform(0.0, 30.0, size=pool_size)
        q_lp = -rng.uniform(0.0, 30.0, size=pool_size)
        if reward_kind == "binary":
            rewards = rng.integers(0, 2, size=pool_size).astype(np.float64)
        elif reward_kind == "uniform01":
            rewards = rng.uniform(0.0, 1.0, size=pool_size)
        elif reward_kind == "uniform_pm2":
            rewards = rng.uniform(-2.0, 2.0, size=pool_size)
        else:
            raise ValueError(reward_kind)
        picks = rng.integers(0, pool_size, size=n)
        picks[: min(n, pool_size)] = np.arange(min(n, pool_size))  # every pool answer used
        for i, a in enumerate(rng.permutation(picks)):
            columns["prompt_id"].append(f"p{p:02d}")
            columns["sample_idx"].append(i)
            columns["reference_logprob"].append(ref_lp[a])
            columns["sampler_logprob"].append(q_lp[a])
            columns["reward"].append(rewards[a])
            columns["response_token_ids"].append(list(token_pool[answers[a]]))
    return columns


def arrow_tables(columns, rng=None):
    """(rollouts, rewards) Arrow tables; rewards rows shuffled when rng is given."""
    n_rows = len(columns["reward"])
    token_ids = columns.get("response_token_ids") or [[int(i)] for i in columns["sample_idx"]]
    rollouts = pa.table({
        "prompt_id": pa.array([str(p) for p in columns["prompt_id"]], pa.string()),
        "sample_idx": pa.array(np.asarray(columns["sample_idx"]), pa.int32()),
        "reference_logprob": pa.array(np.asarray(columns["reference_logprob"], float)),
        "sampler_logprob": pa.array(np.asarray(columns["sampler_logprob"], float)),
        "response_token_ids": pa.array([list(t) for t in token_ids], pa.list_(pa.int32())),
    })
    order = np.arange(n_rows) if rng is None else rng.permutation(n_rows)
    rewards = pa.table({
        "prompt_id": pa.array([str(columns["prompt_id"][i]) for i in order], pa.string()),
        "sample_idx": pa.array(np.asarray(columns["sample_idx"])[order], pa.int32()),
        "reward": pa.array(np.asarray(columns["reward"], dtype=np.float64)[order], pa.float64()),
    })
    return rollouts, rewards


def run_sql(columns, **config):
    rollouts, rewards = arrow_tables(columns, np.random.default_rng(5))
    # rho = 1: the reference weights every prompt (rho has its own: tests/test_zero_information.py)
    weights, stats = compute_weights(rollouts, rewards,
                                     WeightingConfig(**{"zero_information_keep": 1.0} | config))
    return (
        {(row["prompt_id"], row["sample_idx"]): row for row in weights.to_pylist()},
        {row["prompt_id"]: row for row in stats.to_pylist()},
    )


def check_against_reference(columns, scheme, beta, rft_threshold=1.0, success_threshold=None):
    label = f"{scheme} beta={beta} rft_threshold={rft_threshold} success={success_threshold}"
    got_rows, got_stats = run_sql(
        columns, scheme=scheme, beta=beta, rft_threshold=rft_threshold,
        success_threshold=success_threshold,
    )
    ref_rows, ref_stats = reference(columns, scheme, beta, rft_threshold, success_threshold)
    assert set(got_rows) == set(ref_rows), label
    assert set(got_stats) == set(ref_stats), label
    reward_of = dict(zip(zip(map(str, columns["prompt_id"]), map(int, columns["sample_idx"])),
                         map(float, columns["reward"])))
    for key, (log_weight, weight, scale) in ref_rows.items():
        row = got_rows[key]
        assert row["reward"] == reward_of[key], (label, key)
        if log_weight == NEG_INF:
            assert row["log_weight"] == NEG_INF, (label, key, row)
            assert row["weight"] == 0.0, (label, key, row)
            continue
        assert row["log_weight"] is not None and math.isfinite(row["log_weight"]), (label, key, row)
        err = _relative_error(row["log_weight"], log_weight, scale)
        assert err <= RTOL, (label, key, "log_weight", row["log_weight"], log_weight, err)
        err = _relative_error(row["weight"], weight)
        assert err <= RTOL, (label, key, "weight", row["weight"], weight, err)

    for prompt, expected in ref_stats.items():
        got = got_stats[prompt]
        where = (label, prompt)
        assert got["n"] == expected["n"], where
        assert got["covered"] == expected["covered"], where
        assert got["distinct_responses"] == expected["distinct_responses"], (where, got)
        for key, scale in (
            ("mean_reward", 0.0),
            ("log_z", expected["scale"]),
            ("ess", 0.0),
            ("ess_fraction", 0.0),
            ("log_support_mass", expected["scale"]),
            ("support_mass", 0.0),
            ("support_price", beta * expected["scale"]),
        ):
            value = got[key]
            assert value is not None and math.isfinite(value), (where, key, got)
            err = _relative_error(value, expected[key], scale)
            assert err <= RTOL, (where, key, value, expected[key], err)
        if expected["target_success"] is None:
            assert got["target_success"] is None, (where, "target_success", got)
        else:
            assert got["target_success"] is not None, (where, "target_success", got, expected)
            err = _relative_error(got["target_success"], expected["target_success"])
            assert err <= RTOL, (where, "target_success", got["target_success"],
                                 expected["target_success"], err)
    return got_rows, got_stats


# ----------------------------------------------------------------------------- 1. random tables


RANDOM_CASES = [
    (scheme, kind)
    for scheme in SCHEMES
    for kind in ("binary", "uniform01", "uniform_pm2")
    if not (scheme == "reward" and kind == "uniform_pm2")  # log r needs r >= 0
]


@pytest.mark.parametrize("beta", [1e-4, 0.5, 10.0])
# Seed 0 in the unit tier; seeds 1 and 2 (84 cases, 0.1 s each) are slow.
@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2))])
@pytest.mark.parametrize("scheme,reward_kind", RANDOM_CASES)
def test_every_scheme_matches_numpy_reference(scheme, reward_kind, seed, beta):
    columns = random_columns(seed, reward_kind)
    rft_threshold = 1.0 if reward_kind == "binary" else 0.5
    check_against_reference(columns, scheme, beta, rft_threshold=rft_threshold)
    if beta == 0.5:  # an explicit success threshold (target_success, covered)
        check_against_reference(columns, scheme, beta, rft_threshold=rft_threshold,
                                success_threshold=0.3)


def test_random_tables_exercise_the_edge_cases():
    """The random tables above are not vacuous: they hold N=1 prompts, repeated responses,
    rft prompts with no kept sample (ess 0, target_success None) and zero rewards."""
    columns = random_columns(0, "binary")
    _, stats = reference(columns, "rft", 0.5)
    assert any(s["ess"] == 0.0 and s["target_success"] is None for s in stats.values())
    assert any(s["distinct_responses"] < s["n"] for s in stats.values())
    assert any(s["n"] == 1 for s in stats.values())
    _, stats = reference(columns, "reward", 0.5)
    assert any(s["ess"] == 0.0 for s in stats.values())
