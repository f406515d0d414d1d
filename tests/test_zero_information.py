"""Zero-information groups (sql/weights.sql) and rounds with nothing to learn
(sql/prompt_stats.sql, stages/information.py), against an independent numpy reference:

    zero-information prompt x: its log-weights are all equal
    u(x)     = int(first 13 hex digits of md5(f"{seed}:{x}"), 16) / 2^52
    kept     = not zero-information, or u(x) < rho
    log w'_i = log w_i - log rho   for a kept zero-information prompt (rho < 1), else log w_i

and coverage counts only rewarded responses: with no success threshold, a success has the
table's top reward and that reward is above 0.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa
import pytest

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.errors import NothingToLearn
from bolt_tasks.stages.information import nothing_to_learn, require_information
from bolt_tasks.stages.weights import compute_weights, summarize_prompt_stats

RHOS = (1.0, 0.5, 0.25, 0.0)


def random_tables(seed: int, prompts: int = 60, samples: int = 8, importance: bool = False):
    """Rollouts and binary rewards where about half the prompts have all-equal rewards; the
    sampler is pi_ref (no importance term) unless `importance`."""
    rng = np.random.default_rng(seed)
    ids, idx, rewards = [], [], []
    for p in range(prompts):
        kind = rng.integers(3)  # 0: all fail, 1: all succeed, 2: mixed
        rate = {0: 0.0, 1: 1.0, 2: 0.5}[int(kind)]
        for s in range(samples):
            ids.append(f"p{p:03d}")
            idx.append(s)
            rewards.append(float(rng.random() < rate) if kind == 2 else rate)
    reference = rng.normal(-20, 5, len(ids))
    sampler = reference + (rng.normal(0, 0.3, len(ids)) if importance else 0.0)
    rollouts = pa.table({
        "prompt_id": ids, "sample_idx": idx,
        "response_token_ids": [[int(t)] for t in rng.integers(3, 9, len(ids))],
        "reference_logprob": reference, "sampler_logprob": sampler,
    })
    return rollouts, pa.table({"prompt_id": ids, "sample_idx": idx, "reward": rewards})


def draw(seed: int, prompt: str) -> float:
    return int(hashlib.md5(f"{seed}:{prompt}".encode()).hexdigest()[:13], 16) / 2**52


def reference_subsample(full: pa.Table, rho: float, seed: int) -> dict:
    """{(prompt, idx): (kept, log_weight)} from the rho = 1 weights (numpy and hashlib only)."""
    prompts = np.asarray(full["prompt_id"].to_pylist())
    log_weight = np.asarray(full["log_weight"].to_pylist())
    expected = {}
    for prompt in np.unique(prompts):
        rows = np.flatnonzero(prompts == prompt)
        zero_information = bool(np.all(log_weight[rows] == log_weight[rows[0]]))
        kept = not zero_information or draw(seed, str(prompt)) < rho
        shift = -math.log(rho) if zero_information and kept and rho < 1 else 0.0
        for row in rows:
            expected[(str(prompt), full["sample_idx"][row].as_py())] = (kept, log_weight[row] + shift)
    return expected


@pytest.mark.parametrize("seed", (0, 1))
@pytest.mark.parametrize("importance", (False, True))
def test_zero_information_groups_are_kept_with_probability_rho_and_weighted_one_over_rho(seed, importance):
    rollouts, rewards = random_tables(seed, importance=importance)
    full, full_stats = compute_weights(rollouts, rewards, WeightingConfig(zero_information_keep=1.0))
    assert all(full["kept"].to_pylist())
    for rho in RHOS:
        weighting = WeightingConfig(zero_information_keep=rho, zero_information_seed=seed)
        weights, stats = compute_weights(rollouts, rewards, weighting)
        expected = reference_subsample(full, rho, seed)
        for prompt, idx, kept, log_weight, weight in zip(*(weights[c].to_pylist() for c in (
                "prompt_id", "sample_idx", "kept", "log_weight", "weight"))):
            want_kept, want_log_weight = expected[(prompt, idx)]
            assert kept == want_kept, (rho, prompt)
            assert log_weight == pytest.approx(want_log_weight, rel=1e-12, abs=1e-12)
            assert weight == pytest.approx(math.exp(want_log_weight), rel=1e-9)
        if rho == 1.0:  # today's bits
            assert weights["log_weight"].to_pylist() == full["log_weight"].to_pylist()
        # the diagnostics do not move: ESS/N and target success are invariant to a group's scale
        assert stats["ess_fraction"].to_pylist() == pytest.approx(full_stats["ess_fraction"].to_pylist(), rel=1e-12)
        if importance:  # with an importance term no group is exactly flat
            assert all(weights["kept"].to_pylist())


def test_the_kept_weight_is_unbiased():
    """Each zero-information prompt's kept weight, w/rho or 0, averages its full weight: over
    3,000 prompts (independent md5 draws) at rho = 0.25, within 4 standard errors."""
    rollouts, rewards = random_tables(7, prompts=3000, samples=2)
    full, _ = compute_weights(rollouts, rewards, WeightingConfig(zero_information_keep=1.0))
    weights, _ = compute_weights(rollouts, rewards, WeightingConfig(zero_information_keep=0.25))
    ratio = np.where(weights["kept"].to_numpy(zero_copy_only=False), weights["weight"].to_numpy(), 0.0) \
        / full["weight"].to_numpy()
    zero_information = np.asarray([w == 1.0 for w in full["weight"].to_pylist()])  # q = pi_ref: flat is 1
    per_prompt = ratio[zero_information].reshape(-1, 2)[:, 0]
    standard_error = per_prompt.std(ddof=1) / math.sqrt(len(per_prompt))
    print(f"{len(per_prompt)} zero-information prompts: kept weight / full weight "
          f"{per_prompt.mean():.3f} (SE {standard_error:.3f}), kept {np.mean(per_prompt > 0):.3f}")
    assert len(per_prompt) > 1000 and abs(per_prompt.mean() - 1) < 4 * standard_error
    assert set(np.round(per_prompt, 12)) == {0.0, 4.0}  # dropped, or kept at 1/rho


def test_the_default_keeps_a_quarter_and_sft_keeps_every_prompt():
    """The default rho is 0.25 (recipes/default.json says the same: tests/test_recipes.py); the
    sft baseline refits the sampler on the whole table whatever rho is."""
    assert WeightingConfig().zero_information_keep == 0.25
    rollouts, rewards = random_tables(5)
    full, _ = compute_weights(rollouts, rewards, WeightingConfig(zero_information_keep=1.0))
    default, _ = compute_weights(rollouts, rewards, WeightingConfig())
    expected = reference_subsample(full, 0.25, 0)
    assert [expected[(p, i)][0] for p, i in zip(default["prompt_id"].to_pylist(),
                                                default["sample_idx"].to_pylist())] \
        == default["kept"].to_pylist()
    assert 0 < sum(default["kept"].to_pylist()) < default.num_rows
    sft, _ = compute_weights(rollouts, rewards, WeightingConfig(scheme="sft"))
    assert all(sft["kept"].to_pylist()) and set(sft["weight"].to_pylist()) == {1.0}


def test_a_table_where_nothing_is_rewarded_has_no_coverage_and_stops():
    rollouts, rewards = random_tables(3)
    nothing = rewards.set_column(2, "reward", pa.array([0.0] * rewards.num_rows))
    _, stats = compute_weights(rollouts, nothing, WeightingConfig())
    summary = summarize_prompt_stats(stats)
    assert summary["coverage"] == 0.0 and summary["rewarded_share"] == 0.0
    assert summary["informative_share"] == 0.0 and summary["mean_ess_fraction"] == 1.0
    sentence = nothing_to_learn(summary, WeightingConfig())
    assert sentence.startswith("nothing to learn: 0.0% of the 60 training prompts have unequal rewards, "
                               "0.0% of the responses are rewarded and the coverage is 0.000, so the "
                               "round stops before training")
    with pytest.raises(NothingToLearn, match="weighting.train_without_information=true trains anyway"):
        require_information(stats, WeightingConfig())
    require_information(stats, WeightingConfig(train_without_information=True))
    require_information(stats, WeightingConfig(scheme="sft"))  # plain SFT ignores rewards

    # trained anyway, every prompt is flat: rho = 0 drops them all, and the round says so
    anyway = WeightingConfig(train_without_information=True, zero_information_keep=0.0)
    weights, stats = compute_weights(rollouts, nothing, anyway)
    with pytest.raises(NothingToLearn, match="nothing to train on: every one of the 60 training "
                       "prompts has equal weights and weighting.zero_information_keep=0 dropped"):
        require_information(stats, anyway, weights)
    weights, stats = compute_weights(rollouts, nothing, WeightingConfig(train_without_information=True))
    require_information(stats, WeightingConfig(train_without_information=True), weights)  # some kept

    everything = rewards.set_column(2, "reward", pa.array([1.0] * rewards.num_rows))
    _, stats = compute_weights(rollouts, everything, WeightingConfig())
    summary = summarize_prompt_stats(stats)
    assert summary["coverage"] == 1.0 and summary["rewarded_share"] == 1.0
    assert summary["informative_share"] == 0.0


def test_a_share_of_informative_prompts_below_the_setting_stops():
    rollouts, rewards = random_tables(4)
    _, stats = compute_weights(rollouts, rewards, WeightingConfig())
    summary = summarize_prompt_stats(stats)
    share = summary["informative_share"]
    assert 0.1 < share < 0.6 and 0 < summary["coverage"] < 1
    assert nothing_to_learn(summary, WeightingConfig()) is None
    sentence = nothing_to_learn(summary, WeightingConfig(min_informative_share=0.9))
    assert f"{share:.1%} of the 60 training prompts have unequal rewards (below " \
           "weighting.min_informative_share=0.9)" in sentence
