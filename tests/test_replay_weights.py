"""Replay weights (sql/replay_tilt.sql, then sql/weights.sql) against an independent numpy
reference of docs/DESIGN.md "Replay": rollouts of one prompt pooled from three samplers q_0,
q_1, q_2 (the round's own, k = 2), weighted by the balance heuristic

    log m(y|x) = logsumexp_j(log n_j + log q_j(y|x)) - log n
    s_i        = eta*r_i + alpha*log pi_ref(y_i|x) + (1-alpha)*log q_k(y_i|x) - log m(y_i|x)
    log w_i    = s_i - logsumexp_j(s_j) + log n

The reference uses numpy and math only."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.weights import Replay, compute_weights

RTOL = 1e-9
TINY = 1e-290  # below it, weights are compared absolutely (subnormal range; see test_weights_sql.py)
SAMPLERS = (0, 1, 2)
CURRENT = 2


def pooled_tables(seed: int, prompts: int = 12):
    """Pooled rollouts, rewards and every response's log-prob under every sampler. A prompt's
    n_j are random in 0..4 (at least one sample); the samplers differ by a shift and noise."""
    rng = np.random.default_rng(seed)
    rows, logprobs = [], []
    for p in range(prompts):
        counts = rng.integers(0, 5, len(SAMPLERS))
        counts[rng.integers(len(SAMPLERS))] += 1
        index = 0
        for sampler, count in zip(SAMPLERS, counts):
            for _ in range(count):
                reference = rng.normal(-15, 4)
                by_sampler = {j: reference + rng.normal(0.5 * j, 1.5) for j in SAMPLERS}
                rows.append({"prompt_id": f"p{p:02d}", "sample_idx": index, "round": sampler,
                             "reference_logprob": reference, "sampler_logprob": by_sampler[sampler],
                             "reward": float(rng.random() < 0.4) if seed % 2 else float(rng.uniform(-1, 1)),
                             "by_sampler": by_sampler})
                index += 1
    for row in rows:
        for j, value in row["by_sampler"].items():
            logprobs.append({"prompt_id": row["prompt_id"], "sample_idx": row["sample_idx"],
                             "round": j, "logprob": value})
    rollouts = pa.table({
        "prompt_id": [r["prompt_id"] for r in rows], "sample_idx": [r["sample_idx"] for r in rows],
        "round": [r["round"] for r in rows],
        "response_token_ids": [[3 + r["sample_idx"]] for r in rows],
        "reference_logprob": [r["reference_logprob"] for r in rows],
        "sampler_logprob": [r["sampler_logprob"] for r in rows],
    })
    rewards = pa.table({"prompt_id": rollouts["prompt_id"], "sample_idx": rollouts["sample_idx"],
                        "reward": [r["reward"] for r in rows]})
    return rollouts, rewards, pa.Table.from_pylist(logprobs), rows


def logsumexp(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    top = float(values.max())
    return top + math.log(math.fsum(np.exp(values - top)))


def reference_log_weights(rows, beta: float, eta: float | None, alpha: float) -> dict:
    step = 1.0 / beta if eta is None else eta
    expected = {}
    for prompt in sorted({r["prompt_id"] for r in rows}):
        group = [r for r in rows if r["prompt_id"] == prompt]
        n_j = {j: sum(r["round"] == j for r in group) for j in SAMPLERS}
        n = len(group)
        scores = []
        for r in group:
            log_mixture = logsumexp([math.log(n_j[j]) + r["by_sampler"][j] for j in SAMPLERS if n_j[j]]) - math.log(n)
            scores.append(step * r["reward"] + alpha * r["reference_logprob"]
                          + (1 - alpha) * r["by_sampler"][CURRENT] - log_mixture)
        total = logsumexp(scores)
        for r, score in zip(group, scores):
            expected[(prompt, r["sample_idx"])] = score - total + math.log(n)
    return expected


@pytest.mark.parametrize("seed", (0, 1, 2, 3))
@pytest.mark.parametrize("beta, eta, alpha", [(0.5, None, 1.0), (1e-4, None, 1.0), (10.0, None, 1.0),
                                              (0.5, 3.0, 0.3), (1e-2, None, 0.0)])
def test_replay_weights_match_the_numpy_reference(seed, beta, eta, alpha):
    rollouts, rewards, pool_logprobs, rows = pooled_tables(seed)
    weighting = WeightingConfig(beta=beta, eta=eta, alpha=alpha)
    weights, stats = compute_weights(rollouts, rewards, weighting, replay=Replay(pool_logprobs, CURRENT))
    expected = reference_log_weights(rows, beta, eta, alpha)
    assert weights.num_rows == len(expected)
    for prompt, idx, log_weight, weight in zip(*(weights[c].to_pylist() for c in (
            "prompt_id", "sample_idx", "log_weight", "weight"))):
        want = expected[(prompt, idx)]
        assert abs(log_weight - want) <= 1e-9 * max(1.0, abs(want)), (prompt, idx, log_weight, want)
        want_weight = math.exp(want)
        assert abs(weight - want_weight) <= RTOL * max(want_weight, TINY), (prompt, idx)
    for prompt, n, ess in zip(*(stats[c].to_pylist() for c in ("prompt_id", "n", "ess"))):
        group = [math.exp(expected[key]) for key in expected if key[0] == prompt]
        assert n == len(group) and ess == pytest.approx(sum(group) ** 2 / sum(w * w for w in group), rel=1e-9)


def test_one_sampler_replays_to_the_fresh_rounds_weights():
    """A pool of the round's own samples only is today's bolt weighting, within rounding."""
    rollouts, rewards, pool_logprobs, _ = pooled_tables(5)
    own = rollouts.set_column(2, "round", pa.array([CURRENT] * rollouts.num_rows))
    own_logprobs = pool_logprobs.filter(pa.compute.equal(pool_logprobs["round"], CURRENT))
    own = own.set_column(5, "sampler_logprob", own_logprobs.sort_by([("prompt_id", "ascending"),
                                                                      ("sample_idx", "ascending")])["logprob"])
    fresh, _ = compute_weights(own, rewards, WeightingConfig(alpha=0.4, eta=2.0))
    replayed, _ = compute_weights(own, rewards, WeightingConfig(alpha=0.4, eta=2.0),
                                  replay=Replay(own_logprobs, CURRENT))
    assert np.allclose(replayed["log_weight"].to_numpy(), fresh["log_weight"].to_numpy(), rtol=0, atol=1e-12)


def test_a_missing_log_prob_is_refused_naming_the_sample_and_sampler():
    rollouts, rewards, pool_logprobs, _ = pooled_tables(6)
    first = pool_logprobs.slice(1)  # drops (p00, sample 0) under sampler 0
    with pytest.raises(BoltInputError, match=r"lacks 1 log-prob.*prompt 'p00' sample 0 under the sampler of round 0"):
        compute_weights(rollouts, rewards, WeightingConfig(), replay=Replay(first, CURRENT))
    with pytest.raises(BoltInputError, match="bolt scheme"):
        compute_weights(rollouts, rewards, WeightingConfig(scheme="rft"), replay=Replay(pool_logprobs, CURRENT))
