"""E4 on the built-in task: optimisation time of BOLT refresh rounds against online RLVR (TRL's
GRPOTrainer), each arm with the same tuning budget and the same wall-clock budget per setting.

Same reference policy, training prompts and held-out prompts, same machine, one run. Held-out
accuracy is exact: the mean over held-out prompts of pi_theta(answer + EOS | x), the expected
temperature-1 accuracy, in one forward pass; the clock stops while it is measured.
  - GRPO: TRL GRPOTrainer (8 generations per prompt, 8 prompts per step, no KL term: TRL's
    default), one run per learning rate (GRPO_LEARNING_RATES).
  - BOLT: refresh rounds (bench/e4_race.py), one run per setting of learning rate x epochs x N x
    eta x alpha x prompts per round (BOLT_SETTINGS): as many settings as GRPO has learning rates.
Reported per accuracy level (0.90, 0.95, GRPO's best): each arm's fastest setting to reach it,
and the ratio BOLT / GRPO of their times (below 1: BOLT is faster).

    pip install -e ".[grpo]"
    python bench/grpo_vs_bolt.py --runs-dir runs --seed 0 [--budget-seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from e4_race import BoltSetting, run_bolt, run_grpo, summarize, write_results

from bolt_tasks.core.catalogue import RunsDirectory
from bolt import ReferenceConfig, SamplingConfig, TaskConfig, TrainingConfig
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import encode_prompts, load_policy
from bolt_tasks.stages.arithmetic import prompts_table
from bolt_tasks.stages.reference import embedded_reference_dir, train_reference

# The same tuning budget for both arms: five settings each, fixed before any was run (the
# fifth of each added with smaller BOLT rounds).
GRPO_LEARNING_RATES = (3e-5, 1e-4, 3e-4, 5e-4, 1e-3)
BOLT_SETTINGS = (
    # the earlier E4's fit, with eta = 2 (pure reward tilting, two e-folds of odds a round)
    BoltSetting(learning_rate=1e-4, epochs=2, samples=8, eta=2.0, alpha=0.0),
    # a faster fit, one epoch, a bigger tilt: one exact round takes odds 1 to e^4 (p 0.98)
    BoltSetting(learning_rate=1e-3, epochs=1, samples=8, eta=4.0, alpha=0.0),
    # half the samples (cheaper rounds), a larger tilt
    BoltSetting(learning_rate=1e-3, epochs=1, samples=4, eta=8.0, alpha=0.0),
    # alpha = 1: every round targets pi_ref * exp(8 r), i.e. pi* at beta = 1/8
    BoltSetting(learning_rate=1e-3, epochs=1, samples=8, eta=8.0, alpha=1.0),
    # smaller rounds: 250 of the 1000 training prompts a round, so a fit comes four times as often
    BoltSetting(learning_rate=1e-3, epochs=1, samples=8, eta=4.0, alpha=0.0, prompts_per_round=250),
)


class HeldOutAccuracy:
    """Exact expected accuracy on held-out prompts, for a model object already in memory."""

    def __init__(self, heldout: pa.Table, tokenizer):
        self.prompts = encode_prompts(tokenizer, heldout["prompt"].to_pylist())
        self.answers = [tokenizer(a, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
                        for a in heldout["answer"].to_pylist()]
        self.pad = tokenizer.pad_token_id

    def per_prompt(self, model) -> np.ndarray:
        """pi_theta(answer + EOS | x) of each held-out prompt."""
        was_training = model.training
        model.eval()
        logprobs = response_logprobs(model, self.prompts, self.answers, self.pad, batch_size=1024)
        model.train(was_training)
        return np.exp(logprobs)

    def __call__(self, model) -> float:
        return float(self.per_prompt(model).mean())


def built_in_reward(tokenizer):
    def reward(prompts, completions, completion_ids, answer, **_):
        return [float(text == target and tokenizer.eos_token_id in ids)
                for text, target, ids in zip(completions, answer, completion_ids)]
    return reward


@dataclass
class BuiltInRace:
    """What both arms start from on the built-in task: the embedded reference policy (trained
    here if the runs directory has none), the default round's prompts and the held-out judge."""

    runs: RunsDirectory
    task: TaskConfig
    reference: str
    prompts: pa.Table
    tokenizer: object
    accuracy: HeldOutAccuracy

    @classmethod
    def prepare(cls, runs_dir: str) -> "BuiltInRace":
        runs = RunsDirectory.at(runs_dir)
        reference_config, task = ReferenceConfig(), TaskConfig()
        reference = embedded_reference_dir(runs, reference_config, task)
        if not (reference / "model.safetensors").exists():
            train_reference(reference_config, task.seed, task.heldout_prompts, reference)
        prompts = prompts_table(task.seed, task.train_prompts, task.heldout_prompts)
        _, tokenizer = load_policy(str(reference), torch.device("cpu"))
        accuracy = HeldOutAccuracy(prompts.filter(pc.equal(prompts["split"], "heldout")), tokenizer)
        return cls(runs, task, str(reference), prompts, tokenizer, accuracy)

    def grpo_dataset(self):
        """The training prompts as TRL takes them."""
        from datasets import Dataset

        train = self.prompts.filter(pc.equal(self.prompts["split"], "train"))
        return Dataset.from_list([{"prompt": p, "answer": a} for p, a in
                                  zip(train["prompt"].to_pylist(), train["answer"].to_pylist())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--budget-seconds", type=float, default=60.0, help="per setting, both arms")
    parser.add_argument("--seed", type=int, default=0, help="GRPO's and BOLT's sampling and data order")
    parser.add_argument("--learning-rates", default=",".join(f"{x:g}" for x in GRPO_LEARNING_RATES))
    parser.add_argument("--evaluate-every", type=int, default=5, help="GRPO steps between evaluations")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    race = BuiltInRace.prepare(args.runs_dir)
    runs, task, reference, prompts, tokenizer, accuracy = (
        race.runs, race.task, race.reference, race.prompts, race.tokenizer, race.accuracy)
    learning_rates = [float(x) for x in args.learning_rates.split(",")]
    if len(learning_rates) != len(BOLT_SETTINGS):
        raise SystemExit(f"the same tuning budget: {len(BOLT_SETTINGS)} GRPO learning rates, one "
                         f"per BOLT setting; got {len(learning_rates)}")

    dataset = race.grpo_dataset()
    bolt, grpo = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for i, setting in enumerate(BOLT_SETTINGS):
            bolt[setting.name] = run_bolt(
                reference, prompts, accuracy, setting, args.budget_seconds,
                Path(scratch) / f"bolt-{i}", task, SamplingConfig(), TrainingConfig(), args.seed)
        for learning_rate in learning_rates:
            grpo[f"GRPO lr={learning_rate:g}"] = run_grpo(
                reference, dataset, built_in_reward(tokenizer), accuracy, learning_rate,
                args.budget_seconds, args.evaluate_every, Path(scratch) / "grpo", args.seed,
                per_device_train_batch_size=64, num_generations=8, max_completion_length=5)
    summary = summarize(bolt, grpo, [0.90, 0.95], args.budget_seconds)
    summary |= {"seed": args.seed, "budget_seconds": args.budget_seconds,
                "reference_accuracy": bolt[BOLT_SETTINGS[0].name][0]["accuracy"]}
    write_results(runs.experiment("e4"), f"e4_seed{args.seed}", bolt, grpo, summary, BOLT_SETTINGS,
                  f"E4 (built-in task, seed {args.seed}): BOLT refresh rounds vs GRPO (TRL)",
                  "held-out expected accuracy (temperature 1)")


if __name__ == "__main__":
    main()
