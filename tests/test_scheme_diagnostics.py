"""The per-prompt diagnostics of every weighting scheme on hand-computed cases, tiny beta, and
bad rewards (the numpy reference is in test_schemes.py)."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.weights import write_weights
from test_schemes import NEG_INF, SCHEMES, arrow_tables, check_against_reference, run_sql

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
            str(rollouts_path), str(rewards_path), WeightingConfig(scheme=scheme, beta=0.5, zero_information_keep=1.0),
            target / "weights.parquet", target / "prompt_stats.parquet")
        assert (target / "weights.parquet").exists() and (target / "prompt_stats.parquet").exists()
        assert pq.read_table(weights_ref.path).num_rows == 5
    check_against_reference(columns, "bolt", 0.5)
    # A zero reward is fine for `reward`: weight 0, log-weight -inf.
    rows, _ = check_against_reference(hand_columns({"a": [0.0, 1.0, 0.5]}), "reward", 0.5)
    assert rows[("a", 0)]["weight"] == 0.0 and rows[("a", 0)]["log_weight"] == NEG_INF
