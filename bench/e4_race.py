"""E4's race, shared by the built-in task (bench/grpo_vs_bolt.py) and the real model
(bench/grpo_vs_bolt_real.py): BOLT refresh rounds and TRL's GRPOTrainer, each setting for the
same optimisation wall-clock budget, the clock stopped while held-out accuracy is measured.

A BOLT round: sample N responses per training prompt from pi_k, score, weight in SQL, fit
pi_(k+1) (the stage functions a bolt-round runs, called directly: Prefect's and MLflow's
per-round cost is measured apart, in bench/round_overhead.py). Its stages are timed one by one,
so a lost race names the stage that lost it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import torch

from bolt import (
    SamplingConfig,
    TaskConfig,
    TrainingConfig,
    WeightingConfig,
    compute_weights,
    sample_rollouts,
    score_rollouts,
    train_policy,
)
from bolt_tasks.policy.modeling import load_policy
from provenance import provenance

# A model in memory -> held-out accuracy, or a dict of measures with the race's own under
# "accuracy" (the others are kept in the curve beside it).
Accuracy = Callable[[object], "float | dict[str, float]"]


def measure(accuracy: Accuracy, model) -> dict[str, float]:
    value = accuracy(model)
    return dict(value) if isinstance(value, dict) else {"accuracy": value}


@dataclass(frozen=True)
class BoltSetting:
    """One point of BOLT's tuning grid: the fit (learning rate, epochs), the rollouts (N) and
    the mirror-descent step (eta, the per-round reward tilt; alpha = 1 anchors every round at
    pi_ref, alpha = 0 tilts the previous policy) and rho, the share of zero-information prompts
    trained on (weighting.zero_information_keep: the code's default; races before 2026-12-07
    ran rho = 1, and their setting names have no "rho=")."""

    learning_rate: float
    epochs: int
    samples: int
    eta: float
    alpha: float
    prompts_per_round: int | None = None  # a smaller round: the next this-many training prompts
    zero_information_keep: float = WeightingConfig().zero_information_keep

    @property
    def name(self) -> str:
        smaller = f" P={self.prompts_per_round}" if self.prompts_per_round else ""
        return (f"BOLT lr={self.learning_rate:g} ep={self.epochs} N={self.samples} "
                f"eta={self.eta:g} alpha={self.alpha:g}{smaller} rho={self.zero_information_keep:g}")


def round_prompts(prompts: pa.Table, setting: BoltSetting, k: int) -> pa.Table:
    """Round k's prompts: the held-out ones and all training prompts, or (prompts_per_round)
    the k-th run of that many training prompts, cycling through them."""
    if setting.prompts_per_round is None:
        return prompts
    train = [i for i, split in enumerate(prompts["split"].to_pylist()) if split == "train"]
    size = min(setting.prompts_per_round, len(train))
    start = (k * size) % len(train)
    chosen, training = set((train + train)[start : start + size]), set(train)
    return prompts.take([i for i in range(prompts.num_rows) if i in chosen or i not in training])


def run_bolt(reference: str, prompts: pa.Table, accuracy: Accuracy, setting: BoltSetting,
             budget: float, work: Path, task: TaskConfig, sampling: SamplingConfig,
             training: TrainingConfig, seed: int) -> list[dict]:
    """Refresh rounds until the budget is spent; one curve point per round."""
    model, _ = load_policy(reference, torch.device("cpu"))
    curve = [{"seconds": 0.0, **measure(accuracy, model), "round": -1}]
    sampling = sampling.model_copy(update={"samples_per_prompt": setting.samples, "seed": seed})
    training = training.model_copy(update={"learning_rate": setting.learning_rate,
                                           "epochs": setting.epochs, "seed": seed})
    weighting = WeightingConfig(eta=setting.eta, alpha=setting.alpha,
                                zero_information_keep=setting.zero_information_keep)
    sampler, elapsed, k = reference, 0.0, 0
    stage_totals = {"sampling": 0.0, "scoring": 0.0, "weights": 0.0, "training": 0.0, "reload": 0.0}
    while elapsed < budget:
        times = {}
        start = time.perf_counter()
        this_round = round_prompts(prompts, setting, k)
        rollouts = sample_rollouts(this_round, sampler, reference, sampling, task, k,
                                   work / f"rollouts-{k}.parquet").read()
        times["sampling"] = time.perf_counter() - start
        rewards = score_rollouts(this_round, rollouts, task, work / f"rewards-{k}.parquet").read()
        times["scoring"] = time.perf_counter() - start - sum(times.values())
        weights, _ = compute_weights(rollouts, rewards, weighting)
        times["weights"] = time.perf_counter() - start - sum(times.values())
        policy = work / f"policy-{k}"
        train_policy(rollouts, weights, sampler, training, policy, work / f"log-{k}.parquet")
        times["training"] = time.perf_counter() - start - sum(times.values())
        model, _ = load_policy(str(policy), torch.device("cpu"))
        times["reload"] = time.perf_counter() - start - sum(times.values())
        elapsed += time.perf_counter() - start
        for name, seconds in times.items():
            stage_totals[name] += seconds
        curve.append({"seconds": elapsed, **measure(accuracy, model), "round": k,
                      "stage_seconds": dict(stage_totals)})
        print(f"  {setting.name} round {k}: {elapsed:.0f}s accuracy {curve[-1]['accuracy']:.3f} "
              f"({', '.join(f'{n} {s:.1f}s' for n, s in times.items())})", flush=True)
        sampler, k = str(policy), k + 1
    return curve


def run_grpo(reference: str, dataset, reward_function, accuracy: Accuracy, learning_rate: float,
             budget: float, evaluate_every: int, out_dir: Path, seed: int,
             stop_at_accuracy: float | None = None, **grpo_args) -> list[dict]:
    """TRL's GRPOTrainer from pi_ref until the budget is spent (or, with stop_at_accuracy, that
    accuracy is reached); a curve point every `evaluate_every` steps."""
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_policy(reference, torch.device("cpu"))
    curve = [{"seconds": 0.0, **measure(accuracy, model), "step": 0}]

    class Clock(TrainerCallback):
        """Counts optimisation time only; stops training at the budget."""

        def __init__(self):
            self.elapsed, self.started = 0.0, time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % evaluate_every == 0:
                self.elapsed += time.perf_counter() - self.started
                curve.append({"seconds": self.elapsed, **measure(accuracy, kwargs["model"]),
                              "step": state.global_step})
                print(f"  GRPO lr={learning_rate:g} step {state.global_step}: "
                      f"{self.elapsed:.0f}s accuracy {curve[-1]['accuracy']:.3f}", flush=True)
                reached = stop_at_accuracy is not None and curve[-1]["accuracy"] >= stop_at_accuracy
                control.should_training_stop = self.elapsed >= budget or reached
                self.started = time.perf_counter()

    args = GRPOConfig(**{
        "output_dir": str(out_dir), "learning_rate": learning_rate, "temperature": 1.0,
        "beta": 0.0,  # TRL's default, no KL term, unless grpo_args set one (the sweep race)
        "use_cpu": True, "bf16": False, "report_to": [], "logging_steps": 1000, "max_steps": 100_000,
        "save_strategy": "no", "disable_dropout": True, "seed": seed, "dataloader_num_workers": 0,
    } | grpo_args)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_function, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Clock()])
    trainer.train()
    return curve


def judged_by(curves: dict[str, list[dict]], measure_name: str) -> dict[str, list[dict]]:
    """The same curves with another of their measures as the accuracy."""
    return {name: [dict(point, accuracy=point[measure_name]) for point in curve]
            for name, curve in curves.items()}


def time_to_reach(curve: list[dict], level: float) -> float | None:
    return next((point["seconds"] for point in curve if point["accuracy"] >= level), None)


def best_accuracy(curve: list[dict]) -> float:
    return max(point["accuracy"] for point in curve)


def fastest(curves: dict[str, list[dict]], level: float) -> tuple[str | None, float | None]:
    """The setting that reaches `level` first, and when."""
    reached = {name: time_to_reach(curve, level) for name, curve in curves.items()}
    reached = {name: t for name, t in reached.items() if t is not None}
    if not reached:
        return None, None
    name = min(reached, key=reached.get)
    return name, reached[name]


def within(curve: list[dict], budget: float) -> list[dict]:
    """The points measured within the budget: a BOLT round that started before the budget ran
    out may end after it (GRPO overshoots by one evaluation interval at most); not counted."""
    return [point for point in curve if point["seconds"] <= budget]


def summarize(bolt: dict[str, list[dict]], grpo: dict[str, list[dict]], levels: list[float],
              budget: float) -> dict:
    """Per level: each arm's fastest setting to reach it within the budget and the ratio
    BOLT / GRPO (each arm tuned for that level); per setting: its best accuracy and times to
    each level."""
    bolt = {name: within(curve, budget) for name, curve in bolt.items()}
    grpo = {name: within(curve, budget) for name, curve in grpo.items()}
    grpo_best = max(best_accuracy(c) for c in grpo.values())
    summary = {"grpo_best_accuracy": grpo_best, "levels": {}, "settings": {}}
    for level in [*levels, grpo_best]:
        key = "GRPO's best" if level == grpo_best else f"{level:g}"
        bolt_name, bolt_time = fastest(bolt, level)
        grpo_name, grpo_time = fastest(grpo, level)
        summary["levels"][key] = {
            "level": level, "bolt_setting": bolt_name, "bolt_seconds": bolt_time,
            "grpo_setting": grpo_name, "grpo_seconds": grpo_time,
            "bolt_over_grpo": None if bolt_time is None or not grpo_time else bolt_time / grpo_time,
        }
    for name, curve in {**bolt, **grpo}.items():
        summary["settings"][name] = {
            "best_accuracy": best_accuracy(curve),
            **{f"seconds_to_{key}": time_to_reach(curve, entry["level"])
               for key, entry in summary["levels"].items()},
        }
        if "stage_seconds" in curve[-1]:
            summary["settings"][name]["stage_seconds"] = curve[-1]["stage_seconds"]
    return summary


def write_results(out: Path, prefix: str, bolt: dict, grpo: dict, summary: dict, settings: list,
                  title: str, accuracy_label: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{prefix}_result.json").write_text(json.dumps(
        {"summary": summary, "bolt_settings": [asdict(s) for s in settings],
         "curves": {**bolt, **grpo}, "provenance": provenance()}, indent=2))
    plot({**bolt, **grpo}, summary["grpo_best_accuracy"], out / f"{prefix}_accuracy_vs_wallclock.png",
         title, accuracy_label)
    print(json.dumps(summary, indent=2))


def plot(curves: dict, best: float, out_path: Path, title: str, accuracy_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.8))
    for name, curve in curves.items():
        is_bolt = name.startswith("BOLT")
        axes.plot([p["seconds"] for p in curve], [p["accuracy"] for p in curve],
                  "o-" if is_bolt else "-", label=name, linewidth=2.2 if is_bolt else 1.2,
                  markersize=4)
    axes.axhline(best, color="grey", linestyle=":", label="GRPO's best")
    axes.set_xlabel("optimisation wall-clock (s), 2 CPU cores, evaluation excluded")
    axes.set_ylabel(accuracy_label)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
