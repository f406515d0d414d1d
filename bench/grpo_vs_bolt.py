"""E4: optimisation time of BOLT refresh rounds against online RLVR (TRL's GRPOTrainer).

Same reference policy, same training prompts, same held-out prompts, same machine, one run.
Held-out accuracy is measured exactly, as the mean over held-out prompts of
pi_theta(answer + EOS | x) (the expected temperature-1 accuracy; one forward pass), and the
clock stops while it is measured, so both arms are timed on optimisation alone:
  - GRPO: TRL GRPOTrainer (8 generations per prompt, 8 prompts per step, no KL term: TRL's
    default), one run per learning rate, each for the same wall-clock budget.
  - BOLT: refreshed rounds, each sampling N responses per training prompt from pi_k, scoring,
    weighting in SQL, fitting pi_(k+1); alpha = 0, eta = 1/beta (pure reward tilting, the
    counterpart of GRPO without a KL term) and alpha = 1 (the KL-regularised target pi*).
The figure: BOLT's wall-clock to reach GRPO's best held-out accuracy, divided by GRPO's
wall-clock to reach it (below 1: BOLT is faster).

    pip install -e ".[grpo]"
    python bench/grpo_vs_bolt.py --runs-dir runs [--budget-seconds 150] [--learning-rates 1e-5,3e-5,1e-4,3e-4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import (
    ReferenceConfig,
    SamplingConfig,
    TaskConfig,
    TrainingConfig,
    WeightingConfig,
)
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import encode_prompts, load_policy
from bolt_tasks.policy.training import train_policy
from bolt_tasks.sampling.rollouts import sample_rollouts
from bolt_tasks.stages.arithmetic import prompts_table
from bolt_tasks.stages.reference import embedded_reference_dir, train_reference
from bolt_tasks.stages.verifiers import score_rollouts
from bolt_tasks.stages.weights import compute_weights


class HeldOutAccuracy:
    """Exact expected accuracy on held-out prompts, for a model object already in memory."""

    def __init__(self, heldout: pa.Table, tokenizer):
        self.prompts = encode_prompts(tokenizer, heldout["prompt"].to_pylist())
        self.answers = [tokenizer(a, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
                        for a in heldout["answer"].to_pylist()]
        self.pad = tokenizer.pad_token_id

    def __call__(self, model) -> float:
        was_training = model.training
        model.eval()
        logprobs = response_logprobs(model, self.prompts, self.answers, self.pad, batch_size=1024)
        model.train(was_training)
        return float(np.exp(logprobs).mean())


def run_grpo(reference: str, train: pa.Table, accuracy: HeldOutAccuracy, learning_rate: float,
             budget: float, evaluate_every: int, out_dir: Path) -> list[dict]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_policy(reference, torch.device("cpu"))
    curve = [{"seconds": 0.0, "accuracy": accuracy(model), "step": 0}]

    class Clock(TrainerCallback):
        """Counts optimisation time only; stops training at the budget."""

        def __init__(self):
            self.elapsed, self.started = 0.0, time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % evaluate_every == 0:
                self.elapsed += time.perf_counter() - self.started
                curve.append({"seconds": self.elapsed, "accuracy": accuracy(kwargs["model"]),
                              "step": state.global_step})
                print(f"  grpo lr={learning_rate:g} step {state.global_step}: "
                      f"{self.elapsed:.0f}s accuracy {curve[-1]['accuracy']:.3f}", flush=True)
                control.should_training_stop = self.elapsed >= budget
                self.started = time.perf_counter()

    def reward(prompts, completions, completion_ids, answer, **_):
        return [float(text == target and tokenizer.eos_token_id in ids)
                for text, target, ids in zip(completions, answer, completion_ids)]

    args = GRPOConfig(
        output_dir=str(out_dir), learning_rate=learning_rate, per_device_train_batch_size=64,
        num_generations=8, max_completion_length=5, temperature=1.0, beta=0.0, use_cpu=True,
        bf16=False, report_to=[], logging_steps=1000, max_steps=100_000, save_strategy="no",
        disable_dropout=True, seed=0, dataloader_num_workers=0,
    )
    dataset = Dataset.from_list([{"prompt": p, "answer": a} for p, a in
                                 zip(train["prompt"].to_pylist(), train["answer"].to_pylist())])
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Clock()])
    trainer.train()
    return curve


def run_bolt(reference: str, prompts: pa.Table, accuracy: HeldOutAccuracy, rounds: int,
             weighting: WeightingConfig, samples: int, training: TrainingConfig, work: Path) -> list[dict]:
    model, _ = load_policy(reference, torch.device("cpu"))
    curve = [{"seconds": 0.0, "accuracy": accuracy(model), "round": -1}]
    sampler, elapsed = reference, 0.0
    for k in range(rounds):
        start = time.perf_counter()
        rollouts = sample_rollouts(prompts, sampler, reference, SamplingConfig(samples_per_prompt=samples),
                                   TaskConfig(), k, work / f"rollouts-{k}.parquet").read()
        rewards = score_rollouts(prompts, rollouts, TaskConfig(), work / f"rewards-{k}.parquet").read()
        weights, _ = compute_weights(rollouts, rewards, weighting)
        policy = work / f"policy-{k}"
        train_policy(rollouts, weights, sampler, training, policy, work / f"log-{k}.parquet")
        elapsed += time.perf_counter() - start
        model, _ = load_policy(str(policy), torch.device("cpu"))
        curve.append({"seconds": elapsed, "accuracy": accuracy(model), "round": k})
        print(f"  bolt alpha={weighting.alpha:g} round {k}: {elapsed:.0f}s accuracy "
              f"{curve[-1]['accuracy']:.3f}", flush=True)
        sampler = str(policy)
    return curve


def time_to_reach(curve: list[dict], level: float) -> float | None:
    return next((point["seconds"] for point in curve if point["accuracy"] >= level), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--budget-seconds", type=float, default=150.0)
    parser.add_argument("--learning-rates", default="1e-5,3e-5,1e-4,3e-4")
    parser.add_argument("--evaluate-every", type=int, default=10)
    parser.add_argument("--bolt-rounds", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.5)
    args = parser.parse_args()
    torch.manual_seed(0)
    runs = RunsDirectory.at(args.runs_dir)
    out = runs.experiment("e4")
    out.mkdir(parents=True, exist_ok=True)

    reference_config, task = ReferenceConfig(), TaskConfig()
    reference = embedded_reference_dir(runs, reference_config, task)
    if not (reference / "model.safetensors").exists():
        train_reference(reference_config, task.seed, task.heldout_prompts, reference)
    reference = str(reference)
    prompts = prompts_table(task.seed, task.train_prompts, task.heldout_prompts)
    train = prompts.filter(pc.equal(prompts["split"], "train"))
    _, tokenizer = load_policy(reference, torch.device("cpu"))
    accuracy = HeldOutAccuracy(prompts.filter(pc.equal(prompts["split"], "heldout")), tokenizer)

    curves = {}
    with tempfile.TemporaryDirectory() as scratch:
        for alpha in (0.0, 1.0):
            curves[f"BOLT alpha={alpha:g}"] = run_bolt(
                reference, prompts, accuracy, args.bolt_rounds,
                WeightingConfig(beta=args.beta, alpha=alpha), 8, TrainingConfig(),
                Path(scratch) / f"bolt-{alpha}",
            )
        for learning_rate in (float(x) for x in args.learning_rates.split(",")):
            curves[f"GRPO lr={learning_rate:g}"] = run_grpo(
                reference, train, accuracy, learning_rate, args.budget_seconds,
                args.evaluate_every, Path(scratch) / "grpo",
            )

    grpo = {name: c for name, c in curves.items() if name.startswith("GRPO")}
    best_name = max(grpo, key=lambda name: max(p["accuracy"] for p in grpo[name]))
    best = max(p["accuracy"] for p in grpo[best_name])
    grpo_time = time_to_reach(grpo[best_name], best)
    result = {"grpo_best_run": best_name, "grpo_best_accuracy": best, "grpo_seconds_to_best": grpo_time,
              "reference_accuracy": curves[best_name][0]["accuracy"], "curves": curves}
    for name, curve in curves.items():
        if name.startswith("BOLT"):
            bolt_time = time_to_reach(curve, best)
            result[f"{name}: seconds to GRPO's best"] = bolt_time
            result[f"{name}: ratio to GRPO"] = None if bolt_time is None else bolt_time / grpo_time
            result[f"{name}: best accuracy"] = max(p["accuracy"] for p in curve)
    (out / "e4_result.json").write_text(json.dumps(result, indent=2))
    plot(curves, best, out / "e4_accuracy_vs_wallclock.png")
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=2))


def plot(curves: dict, best: float, out_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for name, curve in curves.items():
        axes.plot([p["seconds"] for p in curve], [p["accuracy"] for p in curve],
                  "o-" if name.startswith("BOLT") else "-", label=name,
                  linewidth=2.5 if name.startswith("BOLT") else 1.2)
    axes.axhline(best, color="grey", linestyle=":", label="GRPO's best")
    axes.set_xlabel("optimisation wall-clock (s), 2 CPU cores, evaluation excluded")
    axes.set_ylabel("held-out expected accuracy (temperature 1)")
    axes.set_title("E4: BOLT refresh rounds vs GRPO (TRL)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
