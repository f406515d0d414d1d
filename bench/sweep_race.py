"""The sweep race on the built-in task: four KL strengths beta, BOLT fitting all four from one set
of rollouts against four GRPO runs (TRL) with the KL coefficient matched, in one run.

The target of KL-regularised RLVR at beta has, per held-out prompt, the exact success rate
p* = p e^(1/beta) / (p e^(1/beta) + 1 - p) (p: pi_ref's), so each beta has its own finish line:
LEVEL_SHARE of the way from pi_ref's held-out accuracy to the mean p*. Accuracy is exact (the
mean over held-out prompts of pi_theta(answer + EOS | x), as bench/grpo_vs_bolt.py measures it),
the clock stopped while it is measured.
  - BOLT: one sampling pass from pi_ref (N samples per training prompt), then for each beta the
    weights (SQL) and fits of the round's trainer (its default epochs each, every fit continuing
    from the last on the same weighted rollouts), until the level or the budget; timed apart. A
    beta's time is the shared sampling and scoring plus its own weights and fits; the sweep's
    time is the sampling once plus all four.
  - GRPO: one TRL GRPOTrainer run per beta with GRPOConfig.beta = that beta (its per-token k3
    KL estimate against pi_ref), rewards not scaled by their standard deviation (scaled, the
    reward's size and so the balance with the KL term would change from group to group), the
    learning rate the best of the E4 race on this task; until it reaches its level or the
    budget is spent.
TRL's loss averages the per-token terms, so its KL weight per sequence is beta divided by the
response's length where BOLT's objective has beta per sequence: the betas are matched as
numbers, not exactly as objectives. Reported per beta: each arm's time to its level and the
ratio BOLT / GRPO, and the sweep's total.

    pip install -e ".[grpo]"
    python bench/sweep_race.py --runs-dir runs [--budget-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from e4_race import run_grpo, time_to_reach
from grpo_vs_bolt import BuiltInRace, HeldOutAccuracy, built_in_reward
from provenance import provenance

from bolt_tasks.core.config import SamplingConfig, TaskConfig, TrainingConfig, WeightingConfig
from bolt_tasks.policy.modeling import load_policy
from bolt_tasks.policy.training import train_policy
from bolt_tasks.sampling.rollouts import sample_rollouts
from bolt_tasks.stages.verifiers import score_rollouts
from bolt_tasks.stages.weights import compute_weights

BETAS = (0.25, 0.5, 1.0, 2.0)
LEVEL_SHARE = 0.9
GRPO_LEARNING_RATE = 3e-4


def target_accuracy(model, heldout_accuracy: HeldOutAccuracy, beta: float) -> float:
    """Mean p* over the held-out prompts, from pi_ref's exact per-prompt success rates."""
    p = np.clip(heldout_accuracy.per_prompt(model), 1e-12, 1 - 1e-12)
    tilt = np.exp(1.0 / beta)
    return float(np.mean(p * tilt / (p * tilt + 1 - p)))


def bolt_sweep(reference: str, prompts, accuracy, levels: dict, work: Path, seed: int,
               budget: float) -> dict:
    """Per beta: its weights, then fits of TrainingConfig's epochs each, every one continuing from
    the last (the same weighted objective, a fresh optimizer), until the beta's level is reached
    or `budget` seconds of its own weights and fits are spent; accuracy after each fit."""
    task, sampling = TaskConfig(), SamplingConfig(seed=seed)
    training = TrainingConfig(seed=seed)
    start = time.perf_counter()
    rollouts = sample_rollouts(prompts, reference, reference, sampling, task, 0, work / "rollouts.parquet").read()
    rewards = score_rollouts(prompts, rollouts, task, work / "rewards.parquet").read()
    shared = time.perf_counter() - start
    result = {"sampling_and_scoring_seconds": shared, "epochs_per_fit": training.epochs, "betas": {}}
    for beta in BETAS:
        start = time.perf_counter()
        weights, _ = compute_weights(rollouts, rewards, WeightingConfig(beta=beta))
        own, curve, model_dir = time.perf_counter() - start, [], reference
        while own < budget:
            policy = work / f"policy-beta-{beta:g}-fit-{len(curve)}"
            start = time.perf_counter()
            train_policy(rollouts, weights, model_dir, training, policy,
                         work / f"log-{beta:g}-{len(curve)}.parquet")
            own += time.perf_counter() - start
            model_dir = str(policy)
            model, _ = load_policy(model_dir, torch.device("cpu"))
            curve.append({"epochs": training.epochs * (len(curve) + 1), "seconds": shared + own,
                          "accuracy": accuracy(model)})
            print(f"  BOLT beta={beta:g}: accuracy {curve[-1]['accuracy']:.3f} (level "
                  f"{levels[beta]:.3f}) after {curve[-1]['epochs']} epochs, {shared:.1f} s shared "
                  f"+ {own:.1f} s", flush=True)
            if curve[-1]["accuracy"] >= levels[beta]:
                break
        reached = curve[-1]["accuracy"] >= levels[beta]
        result["betas"][f"{beta:g}"] = {
            "own_seconds": own, "seconds": shared + own, "accuracy": curve[-1]["accuracy"],
            "level": levels[beta], "reached": reached, "curve": curve}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--budget-seconds", type=float, default=120.0,
                        help="per beta and arm: a GRPO run, or BOLT's weights and fits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluate-every", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    race = BuiltInRace.prepare(args.runs_dir)
    runs, reference, prompts, tokenizer, accuracy = (
        race.runs, race.reference, race.prompts, race.tokenizer, race.accuracy)
    model, _ = load_policy(reference, torch.device("cpu"))
    start_accuracy = accuracy(model)
    levels = {beta: start_accuracy + LEVEL_SHARE * (target_accuracy(model, accuracy, beta) - start_accuracy)
              for beta in BETAS}

    dataset = race.grpo_dataset()
    with tempfile.TemporaryDirectory() as scratch:
        bolt = bolt_sweep(reference, prompts, accuracy, levels, Path(scratch) / "bolt", args.seed,
                          args.budget_seconds)
        grpo = {}
        for beta in BETAS:
            curve = run_grpo(reference, dataset, built_in_reward(tokenizer), accuracy, GRPO_LEARNING_RATE,
                             args.budget_seconds, args.evaluate_every, Path(scratch) / f"grpo-{beta:g}",
                             args.seed, per_device_train_batch_size=64, num_generations=8,
                             max_completion_length=5, beta=beta, scale_rewards="none",
                             stop_at_accuracy=levels[beta])
            grpo[f"{beta:g}"] = {"curve": curve, "seconds": time_to_reach(curve, levels[beta])}
    table = {}
    for beta in BETAS:
        key = f"{beta:g}"
        bolt_seconds = bolt["betas"][key]["seconds"] if bolt["betas"][key]["reached"] else None
        grpo_seconds = grpo[key]["seconds"]
        table[key] = {"level": levels[beta], "bolt_seconds": bolt_seconds, "grpo_seconds": grpo_seconds,
                      "bolt_accuracy": bolt["betas"][key]["accuracy"],
                      "bolt_epochs": bolt["betas"][key]["curve"][-1]["epochs"],
                      "grpo_best_accuracy": max(p["accuracy"] for p in grpo[key]["curve"]),
                      "ratio": bolt_seconds / grpo_seconds if bolt_seconds and grpo_seconds else None}
    sweep = bolt["sampling_and_scoring_seconds"] + sum(b["own_seconds"] for b in bolt["betas"].values())
    grpo_total = [grpo[f"{b:g}"]["seconds"] for b in BETAS]
    summary = {"seed": args.seed, "reference_accuracy": start_accuracy, "level_share": LEVEL_SHARE,
               "grpo_learning_rate": GRPO_LEARNING_RATE, "budget_seconds": args.budget_seconds,
               "betas": table, "bolt_sweep_seconds": sweep,
               "grpo_sweep_seconds": sum(grpo_total) if None not in grpo_total else None}
    out = runs.experiment("e4") / f"sweep_race_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "bolt": bolt, "grpo": grpo, "provenance": provenance()},
                              indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
