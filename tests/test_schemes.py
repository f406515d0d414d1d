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
import pyarrow.parquet as pq
import pytest
import torch

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.weights import compute_weights, write_weights

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
    weights, stats = compute_weights(rollouts, rewards, WeightingConfig(**config))
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
@pytest.mark.parametrize("seed", [0, 1, 2])
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


# ----------------------------------------------------------------------------- 2. diagnostics


def hand_columns(prompts, reference_logprob=None, sampler_logprob=None, tokens=None):
    """{prompt_id: rewards}; per prompt, optional reference/sampler log-probs and token ids
    (defaults: log pi_ref = -3 - i, q = pi_ref, response [i])."""
    reference_logprob, sampler_logprob = reference_logprob or {}, sampler_logprob or {}
    tokens = tokens or {}
    columns = {k: [] for k in (
        "prompt_id", "sample_idx", "reference_logprob", "sampler_logprob", "reward",
        "response_token_ids",
    )}
    for prompt, rewards in prompts.items():
        n = len(rewards)
        refs = reference_logprob.get(prompt, [-3.0 - i for i in range(n)])
        columns["prompt_id"] += [prompt] * n
        columns["sample_idx"] += list(range(n))
        columns["reward"] += [float(r) for r in rewards]
        columns["reference_logprob"] += list(refs)
        columns["sampler_logprob"] += list(sampler_logprob.get(prompt, refs))
        columns["response_token_ids"] += list(tokens.get(prompt, [[i] for i in range(n)]))
    return columns


@pytest.mark.parametrize("scheme", SCHEMES)
def test_equal_rewards_give_unit_weights_and_ess_n(scheme):
    # One prompt, equal rewards that pass the rft threshold: every scheme gives equal weights
    # (reward: w = r = 1), so w = 1 and ESS = N.
    columns = hand_columns({"flat": [1.0] * 5})
    for beta in (1e-4, 0.5, 10.0):
        rows, stats = check_against_reference(columns, scheme, beta)
        for row in rows.values():
            assert row["weight"] == pytest.approx(1.0, abs=1e-12)
            assert row["log_weight"] == pytest.approx(0.0, abs=1e-12)
        assert stats["flat"]["ess"] == pytest.approx(5.0, abs=1e-12)
        assert stats["flat"]["ess_fraction"] == pytest.approx(1.0, abs=1e-12)
        assert stats["flat"]["target_success"] == pytest.approx(1.0, abs=1e-12)


def test_equal_rewards_reward_scheme_keeps_r_as_weight():
    columns = hand_columns({"flat": [0.25] * 4})
    rows, stats = check_against_reference(columns, "reward", 0.5)
    assert all(row["weight"] == pytest.approx(0.25, rel=1e-12) for row in rows.values())
    assert stats["flat"]["ess"] == pytest.approx(4.0, rel=1e-12)


def test_one_dominant_weight_gives_ess_near_one():
    columns = hand_columns({"dom": [1.0, 0.0, 0.1, 0.0, 0.2, 0.0]})
    rows, stats = check_against_reference(columns, "bolt", 0.02)
    # l = r/beta + 0 (q = pi_ref): the others sit >= 40 nats below the winner, so with
    # e = sum_j exp((r_j - 1)/beta) ~ e^-40: ESS = (1 + e)^2 / (1 + sum e_j^2) = 1 + ~8e-18.
    assert stats["dom"]["ess"] == pytest.approx(1.0, abs=1e-15)
    assert rows[("dom", 0)]["weight"] == pytest.approx(6.0, rel=1e-15)
    assert all(rows[("dom", i)]["weight"] < 1e-16 for i in range(1, 6))
    assert stats["dom"]["ess_fraction"] == pytest.approx(1.0 / 6.0, rel=1e-12)
    assert stats["dom"]["target_success"] == pytest.approx(1.0, rel=1e-12)
    # The same prompt under rft: one kept sample, weight 1, ESS 1; sft: ESS = N.
    rows, stats = check_against_reference(columns, "rft", 0.02)
    assert [rows[("dom", i)]["weight"] for i in range(6)] == [1.0, 0, 0, 0, 0, 0]
    assert stats["dom"]["ess"] == 1.0
    _, stats = check_against_reference(columns, "sft", 0.02)
    assert stats["dom"]["ess"] == 6.0
    assert stats["dom"]["target_success"] == pytest.approx(1.0 / 6.0, rel=1e-12)


def test_support_mass_and_price_by_hand():
    # Four samples, three distinct responses; response [5, 1] drawn twice.
    # pi_ref: [5,1] -> 0.3, [7] -> 0.1, [2,2] -> 0.05; rewards 1, 0, 0.5; beta = 0.5; q = pi_ref.
    beta = 0.5
    p = {"a": 0.3, "b": 0.1, "c": 0.05}
    r = {"a": 1.0, "b": 0.0, "c": 0.5}
    order = ["a", "b", "a", "c"]
    ids = {"a": [5, 1], "b": [7], "c": [2, 2]}
    columns = hand_columns(
        {"x": [r[k] for k in order]},
        reference_logprob={"x": [math.log(p[k]) for k in order]},
        tokens={"x": [ids[k] for k in order]},
    )
    # Zhat = mean over the 4 samples of exp(r/beta) = (e^2 + 1 + e^2 + e^1) / 4.
    z_hat = (2 * math.exp(2) + 1 + math.exp(1)) / 4
    # pi*(S_N) = sum over the 3 distinct responses of pi_ref e^{r/beta} / Zhat.
    mass = (0.3 * math.exp(2) + 0.1 * 1 + 0.05 * math.exp(1)) / z_hat
    price = beta * math.log(1 / mass)
    for scheme in SCHEMES:  # the diagnostics do not depend on the scheme
        _, stats = check_against_reference(columns, scheme, beta)
        s = stats["x"]
        assert s["distinct_responses"] == 3
        assert s["n"] == 4
        assert s["log_z"] == pytest.approx(math.log(z_hat), rel=1e-12)
        assert s["support_mass"] == pytest.approx(mass, rel=1e-12)
        assert s["support_price"] == pytest.approx(price, rel=1e-12)
        assert 0 < s["support_mass"] < 1 and s["support_price"] > 0
    # (Counting [5, 1] twice would give a mass 1.9 times as large: the test tells them apart.)


def test_distinct_responses_are_per_prompt_and_by_token_ids():
    # Same token ids in two prompts count in each; [1, 2] and [2, 1] differ; [] is a response.
    tokens = {"a": [[1, 2], [2, 1], [1, 2], [], []], "b": [[1, 2], [1, 2], [1, 2]]}
    columns = hand_columns(
        {"a": [0, 1, 0, 1, 1], "b": [1, 1, 1]},
        reference_logprob={"a": [-1.0, -2.0, -1.0, -4.0, -4.0], "b": [-0.5] * 3},
        tokens=tokens,
    )
    _, stats = check_against_reference(columns, "bolt", 0.5)
    assert stats["a"]["distinct_responses"] == 3
    assert stats["b"]["distinct_responses"] == 1
    # b: one distinct response y, q = pi_ref, r = 1: Zhat = e^{r/beta} = e^2, so
    # pi*(S) = pi_ref(y) e^2 / e^2 = pi_ref(y) = e^-0.5.
    assert stats["b"]["support_mass"] == pytest.approx(math.exp(-0.5), rel=1e-12)


def test_log_z_importance_corrected():
    # q != pi_ref: log Zhat = logsumexp(r/beta + log pi_ref - log q) - log N.
    beta = 0.25
    rewards = [1.0, 0.0, 0.5]
    ref = [math.log(0.2), math.log(0.5), math.log(0.3)]
    q = [math.log(0.6), math.log(0.3), math.log(0.1)]
    columns = hand_columns({"x": rewards}, reference_logprob={"x": ref}, sampler_logprob={"x": q})
    expected = math.log(sum(
        math.exp(r / beta) * math.exp(a) / math.exp(b) for r, a, b in zip(rewards, ref, q)
    ) / 3)
    rows, stats = check_against_reference(columns, "bolt", beta)
    assert stats["x"]["log_z"] == pytest.approx(expected, rel=1e-12)
    # bolt weights: exp(l_i) / Zhat.
    for i, (r, a, b) in enumerate(zip(rewards, ref, q)):
        assert rows[("x", i)]["weight"] == pytest.approx(
            math.exp(r / beta + a - b - expected), rel=1e-12)
    # boltzmann_global ignores the importance term in its weights but not in log_z.
    rows, stats = check_against_reference(columns, "boltzmann_global", beta)
    assert stats["x"]["log_z"] == pytest.approx(expected, rel=1e-12)
    mean = sum(math.exp(r / beta) for r in rewards) / 3
    for i, r in enumerate(rewards):
        assert rows[("x", i)]["weight"] == pytest.approx(math.exp(r / beta) / mean, rel=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tiny_beta_no_overflow(scheme):
    # beta = 1e-4: r/beta up to 1e4 (exp overflows at ~709); every column must stay finite.
    columns = hand_columns(
        {"a": [1.0, 0.0, 1.0, 0.5], "b": [0.0, 0.0, 0.3], "c": [1.0]},
        tokens={"a": [[1], [2], [1], [3]]},
        reference_logprob={"a": [-2.0, -1.0, -2.0, -5.0]},
    )
    rows, stats = check_against_reference(columns, scheme, 1e-4, rft_threshold=0.5)
    for s in stats.values():
        for key in ("log_z", "support_price", "support_mass", "log_support_mass", "ess",
                    "ess_fraction", "mean_reward"):
            assert s[key] is not None and math.isfinite(s[key]), (scheme, key, s)
    for row in rows.values():
        assert not math.isnan(row["weight"]) and math.isfinite(row["weight"]), row
    # a: Zhat = (2 e^{1e4} + 1 + e^{5e3}) / 4 -> log Zhat = 1e4 + log(1/2) (to float64).
    assert stats["a"]["log_z"] == pytest.approx(1e4 + math.log(0.5), rel=1e-14)
    # Distinct {[1]: -2 + 1e4, [2]: -1, [3]: -5 + 5e3}: mass = e^-2 / (1/2) = 2 e^-2.
    assert stats["a"]["support_mass"] == pytest.approx(2 * math.exp(-2.0), rel=1e-9)
    assert stats["a"]["support_price"] == pytest.approx(1e-4 * (2.0 - math.log(2.0)), rel=1e-9)


@pytest.mark.parametrize(
    "scheme,prompts",
    [
        # Global normalisation at beta = 1e-4: "low" sits 0.04 below the top reward, so its
        # weights are 2 exp(-400) / (1 + exp(-400)) ~ 4e-174.
        ("boltzmann_global", {"top": [1.0, 1.0], "low": [0.96, 0.96]}),
        # w = r: rewards of 1e-170.
        ("reward", {"top": [1.0, 1.0], "low": [1e-170, 1e-170]}),
    ],
    ids=["boltzmann_global", "reward"],
)
def test_ess_of_tiny_nonzero_weights_is_scale_invariant(scheme, prompts):
    # The weights of "low" are nonzero (stored as such) but their squares underflow float64.
    # ESS = (sum w)^2 / sum w^2 is scale-invariant: 2 equal weights give ESS = 2, in [1, N];
    # 0 is reserved for prompts whose weights are all 0.
    rows, stats = run_sql(hand_columns(prompts), scheme=scheme, beta=1e-4)
    assert 0 < rows[("low", 0)]["weight"] == rows[("low", 1)]["weight"] < 1e-150
    assert stats["top"]["ess"] == pytest.approx(2.0, rel=1e-12)
    assert stats["low"]["target_success"] == 0.0, stats["low"]
    assert stats["low"]["ess"] == pytest.approx(2.0, rel=1e-9), (
        "ess of nonzero weights must lie in [1, N]", stats["low"], rows[("low", 0)])
    assert stats["low"]["ess_fraction"] == pytest.approx(1.0, rel=1e-9), stats["low"]


# ----------------------------------------------------------------------------- 3. bad input


def test_negative_reward_rejected_by_reward_scheme_only(tmp_path):
    columns = hand_columns({"a": [0.0, 1.0, 0.5], "b": [1.0, -0.25]})
    rollouts, rewards = arrow_tables(columns)  # unshuffled: the -0.25 is file row 5 (1-based)
    rollouts_path, rewards_path = tmp_path / "rollouts.parquet", tmp_path / "rewards.parquet"
    pq.write_table(rollouts, rollouts_path)
    pq.write_table(rewards, rewards_path)
    out = tmp_path / "out"
    with pytest.raises(BoltInputError) as raised:
        write_weights(str(rollouts_path), str(rewards_path),
                      WeightingConfig(scheme="reward", beta=0.5),
                      out / "weights.parquet", out / "prompt_stats.parquet")
    message = str(raised.value)
    assert "reward" in message and "row 5" in message, message
    assert str(rewards_path) in message, message
    assert "-0.25" in message, message
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())

    # The same files work for every other scheme; bolt is checked against the reference.
    for scheme in ("bolt", "boltzmann_global", "rft", "sft"):
        target = tmp_path / scheme
        weights_ref, stats_ref = write_weights(
            str(rollouts_path), str(rewards_path), WeightingConfig(scheme=scheme, beta=0.5),
            target / "weights.parquet", target / "prompt_stats.parquet")
        assert (target / "weights.parquet").exists() and (target / "prompt_stats.parquet").exists()
        assert pq.read_table(weights_ref.path).num_rows == 5
    check_against_reference(columns, "bolt", 0.5)
    # A zero reward is fine for `reward`: weight 0, log-weight -inf.
    rows, _ = check_against_reference(hand_columns({"a": [0.0, 1.0, 0.5]}), "reward", 0.5)
    assert rows[("a", 0)]["weight"] == 0.0 and rows[("a", 0)]["log_weight"] == NEG_INF


# ----------------------------------------------------------------------------- 4. exactness


N_ANSWERS = 6
# Samples per prompt. At 4096 the max-over-4-prompts TV between the exact weighted-MLE fit
# and its population policy is itself ~0.02 on average (above 0.02 for 25-50% of seeds,
# per scheme), so a 0.02 tolerance would pass or fail by the luck of the seed; at 16384 its
# mean is ~0.009 and its 99% quantile ~0.018.
SAMPLES = 16384
BETA = 0.5
RFT_THRESHOLD = 0.5
TV_TOL = 0.02


def _problem():
    """4 prompts x 6 answers: rewards (three 0/1 prompts with 1-2 correct answers, one
    real-valued), full-support pi_ref, and a different full-support sampler q."""
    rng = np.random.default_rng(20240601)
    rewards = np.array([
        [0, 0, 1, 0, 0, 0],
        [1, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1],
        [0.9, 0.15, 0.6, 0.3, 0.05, 0.45],
    ], dtype=np.float64)
    pi_ref = rng.dirichlet(np.full(N_ANSWERS, 3.0), size=len(rewards))
    q = rng.dirichlet(np.full(N_ANSWERS, 3.0), size=len(rewards))
    # Keep both away from zero so every answer is sampled and importance ratios are bounded.
    pi_ref = 0.85 * pi_ref + 0.15 / N_ANSWERS
    q = 0.7 * q + 0.3 / N_ANSWERS
    return rewards, pi_ref, q


def _normalise(unnormalised):
    return unnormalised / unnormalised.sum(axis=1, keepdims=True)


def _tv(a, b) -> float:
    """Max over prompts of the total variation distance."""
    return float(0.5 * np.abs(a - b).sum(axis=1).max())


def _sample_tables(rewards, pi_ref, sampler, seed):
    rng = np.random.default_rng(seed)
    columns = {k: [] for k in ("prompt_id", "sample_idx", "reference_logprob",
                               "sampler_logprob", "reward", "response_token_ids")}
    answers = []
    for x in range(len(rewards)):
        ys = rng.choice(N_ANSWERS, size=SAMPLES, p=sampler[x])
        answers.append(ys)
        columns["prompt_id"] += [f"x{x}"] * SAMPLES
        columns["sample_idx"] += list(range(SAMPLES))
        columns["reference_logprob"] += list(np.log(pi_ref[x, ys]))
        columns["sampler_logprob"] += list(np.log(sampler[x, ys]))
        columns["reward"] += list(rewards[x, ys])
        columns["response_token_ids"] += [[int(y)] for y in ys]
    return columns, np.concatenate(answers)


def _scheme_weights(columns, scheme):
    """The SQL's weights, in the row order of `columns` (prompt x0.., sample_idx 0..)."""
    rollouts, rewards = arrow_tables(columns, np.random.default_rng(5))
    weights, _ = compute_weights(
        rollouts, rewards, WeightingConfig(scheme=scheme, beta=BETA, rft_threshold=RFT_THRESHOLD)
    )
    order = np.lexsort((weights["sample_idx"].to_numpy(), weights["prompt_id"].to_numpy()))
    assert (weights["prompt_id"].to_numpy()[order] == np.asarray(columns["prompt_id"])).all()
    assert (weights["sample_idx"].to_numpy()[order] == np.asarray(columns["sample_idx"])).all()
    return weights["weight"].to_numpy()[order]


def fit_tabular_softmax(prompt_index, answers, weights, n_prompts):
    """argmin_theta -(1/M) sum_i w_i log softmax(theta[x_i])[y_i], by L-BFGS in float64,
    over the individual samples. Returns softmax(theta) and the final gradient norm."""
    flat_index = torch.as_tensor(prompt_index * N_ANSWERS + answers)
    w = torch.as_tensor(weights, dtype=torch.float64)
    theta = torch.zeros(n_prompts, N_ANSWERS, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [theta], lr=1.0, max_iter=2000, tolerance_grad=1e-9, tolerance_change=0.0,
        history_size=20, line_search_fn="strong_wolfe",
    )

    def loss_fn():
        optimizer.zero_grad()
        log_probs = torch.log_softmax(theta, dim=1).reshape(-1)[flat_index]
        loss = -(w * log_probs).sum() / len(w)
        loss.backward()
        return loss

    # Tiny tensors: one thread is ~100x faster than two on a busy machine (no spin-waiting).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer.step(loss_fn)
        loss_fn()
    finally:
        torch.set_num_threads(threads)
    return torch.softmax(theta.detach(), dim=1).numpy(), float(theta.grad.norm())


def _fit(columns, answers, scheme):
    weights = _scheme_weights(columns, scheme)
    n_prompts = len(set(columns["prompt_id"]))
    prompt_index = np.repeat(np.arange(n_prompts), SAMPLES)
    assert list(columns["prompt_id"][::SAMPLES]) == [f"x{i}" for i in range(n_prompts)]
    policy, grad_norm = fit_tabular_softmax(prompt_index, answers, weights, n_prompts)
    assert grad_norm < 1e-6, (scheme, grad_norm)  # from ~0.3 at theta = 0
    # The optimiser found the weighted-MLE optimum: the weighted empirical distribution.
    closed_form = np.zeros((n_prompts, N_ANSWERS))
    np.add.at(closed_form, (prompt_index, answers), weights)
    closed_form = _normalise(closed_form)
    assert _tv(policy, closed_form) < 1e-6, (scheme, _tv(policy, closed_form))
    return policy


def test_exactness_tabular_softmax_recovers_each_schemes_policy():
    rewards, pi_ref, q = _problem()
    tilt = np.exp(rewards / BETA)
    pi_star = _normalise(pi_ref * tilt)
    induced = {  # q(y) E[w | y], normalised per prompt, with q = pi_ref
        "bolt": pi_star,
        "boltzmann_global": pi_star,
        "rft": _normalise(pi_ref * (rewards >= RFT_THRESHOLD)),
        "reward": _normalise(pi_ref * rewards),
        "sft": pi_ref,
    }
    columns, answers = _sample_tables(rewards, pi_ref, pi_ref, seed=1)
    report = {}
    for scheme in SCHEMES:
        policy = _fit(columns, answers, scheme)
        report[scheme] = (_tv(policy, induced[scheme]), _tv(policy, pi_star))
    print("\nTV (max over prompts), samples from pi_ref: scheme -> (to its induced policy, to pi*)")
    for scheme, (own, star) in report.items():
        print(f"  {scheme:17s} {own:.4f} {star:.4f}")
    for scheme, (own, star) in report.items():
        assert own <= TV_TOL, f"{scheme}: TV(fit, induced) = {own:.4f} > {TV_TOL}; {report}"
    for scheme in ("bolt", "boltzmann_global"):
        assert report[scheme][1] <= TV_TOL, f"{scheme}: TV(fit, pi*) = {report[scheme][1]:.4f}"
    for scheme in ("rft", "reward", "sft"):
        assert report[scheme][1] > 5 * TV_TOL, (
            f"{scheme}: TV(fit, pi*) = {report[scheme][1]:.4f} should be far from pi*; {report}")


def test_exactness_importance_correction_with_other_sampler():
    rewards, pi_ref, q = _problem()
    tilt = np.exp(rewards / BETA)
    pi_star = _normalise(pi_ref * tilt)
    q_tilted = _normalise(q * tilt)
    gap = _tv(q_tilted, pi_star)
    assert gap > 5 * TV_TOL, f"q must differ enough from pi_ref: TV(q-tilted, pi*) = {gap:.4f}"
    columns, answers = _sample_tables(rewards, pi_ref, q, seed=2)

    bolt = _fit(columns, answers, "bolt")
    global_ = _fit(columns, answers, "boltzmann_global")
    numbers = {
        "bolt->pi*": _tv(bolt, pi_star),
        "boltzmann_global->q_tilted": _tv(global_, q_tilted),
        "boltzmann_global->pi*": _tv(global_, pi_star),
        "q_tilted->pi*": gap,
    }
    print("\nTV (max over prompts), samples from q != pi_ref:",
          {k: round(v, 4) for k, v in numbers.items()})
    assert numbers["bolt->pi*"] <= TV_TOL, numbers
    assert numbers["boltzmann_global->q_tilted"] <= TV_TOL, numbers
    assert numbers["boltzmann_global->pi*"] > 5 * TV_TOL, numbers
