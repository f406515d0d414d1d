"""The exactness test: weighted maximum likelihood on a tabular softmax policy lands on the
policy each scheme induces, and only bolt (and boltzmann_global, when the sampler is pi_ref)
lands on the Boltzmann target pi*(y|x) = pi_ref(y|x) exp(r(x,y)/beta) / Z(x)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bolt_tasks.core.config import WeightingConfig
from bolt_tasks.stages.weights import compute_weights
from test_schemes import SCHEMES, arrow_tables

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


@pytest.mark.slow
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
