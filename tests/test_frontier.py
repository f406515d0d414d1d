"""The frontier: per-beta means of the SQL diagnostics, from stored rollouts alone."""

import numpy as np
import pyarrow as pa
import pytest

from bolt_tasks.analyses.frontier import frontier_plot, frontier_table
from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.stages.weights import compute_weights


def tables(seed=0, prompts=20, n=8):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0, 1, prompts)
    ids = [f"p{i}" for i in range(prompts) for _ in range(n)]
    reward = (rng.uniform(size=prompts * n) < np.repeat(rates, n)).astype(float)
    reference = -rng.uniform(0.1, 5, prompts * n)
    rollouts = pa.table({
        "prompt_id": ids, "sample_idx": pa.array(list(range(n)) * prompts, pa.int32()),
        "reference_logprob": reference, "sampler_logprob": reference,
        "response_token_ids": pa.array([[int(r), i % 3] for i, r in enumerate(reward)], pa.list_(pa.int32())),
    })
    rewards = pa.table({"prompt_id": ids, "sample_idx": pa.array(list(range(n)) * prompts, pa.int32()),
                        "reward": reward})
    return rollouts, rewards, reward.reshape(prompts, n)


def test_frontier_is_the_mean_of_prompt_stats_at_each_beta():
    rollouts, rewards, _ = tables()
    frontier = frontier_table(rollouts, rewards, [0.25, 1.0, 4.0]).to_pylist()
    for row in frontier:
        _, stats = compute_weights(rollouts, rewards, WeightingConfig(beta=row["beta"]))
        assert row["mean_ess_fraction"] == pytest.approx(np.mean(stats["ess_fraction"].to_numpy()), rel=1e-12)
        assert row["mean_support_price"] == pytest.approx(np.mean(stats["support_price"].to_numpy()), rel=1e-12)


def test_frontier_trades_variance_for_tilt_as_beta_moves():
    rollouts, rewards, reward = tables()
    frontier = frontier_table(rollouts, rewards, [0.1, 0.5, 2.0, 10.0]).to_pylist()
    ess = [r["mean_ess_fraction"] for r in frontier]
    target = [r["mean_target_success"] for r in frontier]
    assert ess == sorted(ess) and ess[-1] > 0.95 and ess[0] < 0.8
    assert target == sorted(target, reverse=True)
    covered = (reward.max(axis=1) >= 1).mean()
    assert all(r["coverage"] == pytest.approx(covered) for r in frontier)
    # beta -> 0 puts all weight on stored successes: p* estimate -> coverage;
    # beta -> infinity keeps pi_ref: p* estimate -> the stored success rate.
    assert frontier[0]["mean_target_success"] == pytest.approx(covered, abs=0.01)
    assert frontier[-1]["mean_target_success"] == pytest.approx(reward.mean(), abs=0.02)


def test_frontier_plot_writes_a_png(tmp_path):
    rollouts, rewards, _ = tables()
    frontier = frontier_table(rollouts, rewards, [0.5, 1.0])
    trained = pa.table({"beta": [0.5], "policy_accuracy": [0.7], "target_accuracy": [0.8],
                        "ref_accuracy": [0.5]})
    path = frontier_plot(frontier, tmp_path / "f.png", trained, "test")
    assert path.stat().st_size > 20_000
