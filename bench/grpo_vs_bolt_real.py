"""E4 on a real model: BOLT refresh rounds against TRL's GRPOTrainer on the README's "A real
model" recipe (the packaged SmolLM2-135M-Instruct, reasoning-gym chain_sum, the strict math
verifier), each setting for the same optimisation wall-clock budget, the same number of settings
for each arm (BOLT_SETTINGS by name, GRPO learning rates).

Two recipes (RECIPES): short, the README command's (16 new tokens), and long, two- and
three-term sums with up to 128 new tokens for the model's worked answer. The rounds run the README command's
configuration (bolt_cli's own parser reads it), except epochs: one per round, as refresh rounds
refit often. GRPO: 8 prompts x 8 generations a step, the recipe's new tokens, no KL term, and
the verifier called in-process (BOLT's scoring pays for its worker processes). Held-out
accuracy: greedy decoding on the held-out prompts, judged by the verifier both arms train on
and, apart, by whether the response's last number is the answer (gsm8k) and by math_lenient
(the gameable verifier of the earlier race, which credits a restated problem); the clock stops
while it is measured. Each judge gets its own table and plot, and each setting's greedy
responses at its best evaluation are kept. `--verifier math_lenient` reruns the earlier race.

    bash scripts/install.sh --real && pip install -e ".[grpo]"
    python bench/grpo_vs_bolt_real.py --runs-dir runs [--recipe short|long] [--seed 0]
        [--budget-seconds 900] [--bolt-settings recipe,small-rounds] [--grpo-learning-rates 2e-5,1e-5]
        [--levels 0.5,0.6] [--probe]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from e4_race import BoltSetting, judged_by, run_bolt, run_grpo, summarize, write_results
from provenance import provenance

from bolt_cli.main import parser as bolt_parser
from bolt_cli.options import build_config
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.policy.model_files import converted_model
from bolt_tasks.policy.modeling import load_tokenizer
from bolt_tasks.sampling.decode import decode_responses, generate
from bolt_tasks.sampling.rollouts import render_task_prompts
from bolt_tasks.stages.verifier_registry import VERIFIERS
from bolt_tasks.stages.prompt_files import build_prompts
from bolt_tasks.stages.verifiers import prompt_rows, score_responses

# The shipped recipe recipes/smollm2.json (the README's real-model round), as `bolt run` reads it.
README_RECIPE = ["run", "--config", "smollm2"]


class GreedyAccuracy:
    """Share of held-out prompts whose greedy response the task's verifier accepts
    ("accuracy"), and the shares the other judges accept (JUDGES: "last_number_accuracy", the
    project's gsm8k verifier, and "lenient_accuracy", math_lenient, which also accepts a
    response that only restates the problem). Keeps the responses of the best evaluation since
    `reset()`, so a reader can see what was credited."""

    def __init__(self, heldout, tokenizer, config):
        self.rows, self.tokenizer, self.config = prompt_rows(heldout), tokenizer, config
        _, self.prompt_ids = render_task_prompts(tokenizer, heldout, config.task)
        self.reset()

    def reset(self) -> None:
        self.best_accuracy, self.best_examples = -1.0, []

    def __call__(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        generations = generate(model, self.tokenizer, self.prompt_ids, 0.0,
                               self.config.evaluation.max_new_tokens,
                               self.config.evaluation.batch_size, 0, "greedy held-out")
        model.train(was_training)
        responses = decode_responses(self.tokenizer, generations.token_ids)
        items = [(row["prompt"], row["answer"], response, reason, row["metadata"])
                 for row, response, reason in zip(self.rows, responses, generations.finish_reasons)]
        rewards, _ = score_responses(items, self.config.task, "score greedy held-out")
        judged = {measure: [VERIFIERS[name](row["prompt"], row["answer"], response, reason)
                            for row, response, reason in zip(self.rows, responses, generations.finish_reasons)]
                  for measure, (name, _) in JUDGES.items()}
        accuracy = float((rewards >= 1.0).mean())
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            self.best_examples = [
                {"prompt": row["prompt"], "answer": row["answer"], "response": response,
                 "reward": float(reward)} | {f"{JUDGES[m][0]}_reward": judged[m][i] for m in JUDGES}
                for i, (row, response, reward) in enumerate(zip(self.rows, responses, rewards))]
        return {"accuracy": accuracy} | {m: float(np.mean(values)) for m, values in judged.items()}


# On top of README_RECIPE. long: two- and three-term sums with room for the model's own worked
# answer, up to 128 new tokens, under its default system prompt: pi_ref's greedy accuracy 0.242
# (--probe, 2026-12-03). On three-term sums alone it was 0.135, and 0.083 with a system prompt
# asking to "think step by step, then finish with 'The answer is N.'": below the 15-60% a race
# needs, so neither is used.
RECIPES = {
    "short": [],
    "long": ["--set", 'task.source_options={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1}',
             "--set", "sampling.max_new_tokens=128", "--set", "evaluation.max_new_tokens=128",
             "--set", "training.max_tokens_per_micro_batch=8192"],
}
# BOLT's tuning grid on the real model; a race takes as many GRPO learning rates as settings.
BOLT_SETTINGS = {
    # the recipe's fit with one epoch per round, pure reward tilting (two e-folds of odds a round)
    "recipe": BoltSetting(learning_rate=2e-5, epochs=1, samples=8, eta=2.0, alpha=0.0),
    # smaller rounds: 32 training prompts a round, so the first fit comes sooner
    "small-rounds": BoltSetting(learning_rate=2e-5, epochs=1, samples=8, eta=2.0, alpha=0.0,
                                prompts_per_round=32),
}

# The judges besides the trained verifier: (registry verifier, plot label).
JUDGES = {"last_number_accuracy": ("gsm8k", "held-out greedy accuracy (last number = answer)"),
          "lenient_accuracy": ("math_lenient", "held-out greedy accuracy (math_lenient: a restated "
                                               "problem counts)")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--budget-seconds", type=float, default=900.0, help="per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grpo-learning-rate", type=float, default=2e-5)
    parser.add_argument("--evaluate-every", type=int, default=5, help="GRPO steps between evaluations")
    parser.add_argument("--verifier", default="math", choices=["math", "math_lenient"],
                        help="the verifier both arms train on (math_lenient: the earlier race)")
    parser.add_argument("--recipe", default="short", choices=sorted(RECIPES),
                        help="short: the README recipe (16 new tokens); long: up to 128 new tokens")
    parser.add_argument("--grpo-learning-rates", default=None,
                        help="comma-separated, one GRPO run each (default: --grpo-learning-rate)")
    parser.add_argument("--bolt-settings", default="recipe",
                        help=f"comma-separated names from {sorted(BOLT_SETTINGS)}, or none")
    parser.add_argument("--levels", default="0.5,0.6",
                        help="comma-separated accuracy levels the time ratios are reported at")
    parser.add_argument("--probe", action="store_true",
                        help="print pi_ref's greedy held-out accuracy under each judge and stop "
                             "(is a recipe in the range worth racing on?)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    config = build_config(bolt_parser().parse_args(
        README_RECIPE + RECIPES[args.recipe] + ["--runs-dir", args.runs_dir,
                                                "--set", f"task.verifier={args.verifier}"]))
    prefix = "e4_real" if args.verifier == "math_lenient" else f"e4_real_{args.recipe}_seed{args.seed}"
    train_verifier = VERIFIERS[args.verifier]
    runs = RunsDirectory.at(args.runs_dir)
    reference = str(converted_model(runs, config.reference.model))
    prompts = build_prompts(config.task)
    train = prompts.filter(pc.equal(prompts["split"], "train"))
    tokenizer = load_tokenizer(reference)
    accuracy = GreedyAccuracy(prompts.filter(pc.equal(prompts["split"], "heldout")), tokenizer, config)
    if args.probe:
        from bolt_tasks.policy.modeling import load_policy

        model, _ = load_policy(reference, torch.device("cpu"))
        judged = accuracy(model)
        lengths = [len(tokenizer(row["response"], add_special_tokens=False).input_ids)
                   for row in accuracy.best_examples]
        print(json.dumps({"recipe": args.recipe, "verifier": args.verifier,
                          "heldout_prompts": len(accuracy.rows),
                          "mean_greedy_response_tokens": float(np.mean(lengths))} | judged))
        for row in accuracy.best_examples[:4]:
            print(f"  {row['prompt']!r} -> {row['response']!r} (answer {row['answer']}, reward {row['reward']:g})")
        return
    # "none": GRPO alone (e.g. again with a finer --evaluate-every)
    settings = [] if args.bolt_settings == "none" else [BOLT_SETTINGS[n] for n in args.bolt_settings.split(",")]
    learning_rates = [float(x) for x in (args.grpo_learning_rates or str(args.grpo_learning_rate)).split(",")]

    from datasets import Dataset

    texts, _ = render_task_prompts(tokenizer, train, config.task)
    dataset = Dataset.from_list([{"prompt": text, "question": row["prompt"], "answer": row["answer"]}
                                 for text, row in zip(texts, prompt_rows(train))])

    def reward(prompts, completions, question, answer, **_):
        return [float(train_verifier(q, a, c, "stop") >= 1.0)
                for q, a, c in zip(question, answer, completions)]

    grpo, bolt, examples = {}, {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for learning_rate in learning_rates:
            name = f"GRPO lr={learning_rate:g}"
            grpo[name] = run_grpo(
                reference, dataset, reward, accuracy, learning_rate, args.budget_seconds,
                args.evaluate_every, Path(scratch) / "grpo", args.seed, per_device_train_batch_size=64,
                num_generations=8, max_completion_length=config.sampling.max_new_tokens)
            examples[name] = accuracy.best_examples
            accuracy.reset()
        for i, setting in enumerate(settings):
            bolt[setting.name] = run_bolt(reference, prompts, accuracy, setting, args.budget_seconds,
                                          Path(scratch) / f"bolt-{i}", config.task, config.sampling,
                                          config.training, args.seed)
            examples[setting.name] = accuracy.best_examples
            accuracy.reset()
    judges = [(prefix, "accuracy", f"held-out greedy accuracy ({args.verifier} verifier, trained on)")]
    judges += [(f"{prefix}_{measure.removesuffix('_accuracy')}", measure, label)
               for measure, (name, label) in JUDGES.items() if name != args.verifier]
    for out_prefix, measure_name, label in judges:
        bolt_curves, grpo_curves = judged_by(bolt, measure_name), judged_by(grpo, measure_name)
        summary = summarize(bolt_curves, grpo_curves, [float(x) for x in args.levels.split(",")],
                            args.budget_seconds)
        summary |= {"seed": args.seed, "budget_seconds": args.budget_seconds, "judge": label,
                    "recipe": args.recipe, "max_new_tokens": config.sampling.max_new_tokens,
                    "reference_accuracy": next(iter({**bolt_curves, **grpo_curves}.values()))[0]["accuracy"]}
        write_results(runs.experiment("e4"), out_prefix, bolt_curves, grpo_curves, summary, settings,
                      "E4 (SmolLM2-135M-Instruct, chain_sum): BOLT refresh rounds vs GRPO (TRL)", label)
    examples_path = runs.experiment("e4") / f"{prefix}_best_responses.json"
    examples_path.write_text(json.dumps(examples | {"provenance": provenance()}, indent=1))
    for arm, rows in examples.items():
        print(f"{arm}: greedy responses at its best evaluation ({examples_path}):")
        for row in rows[:6]:
            print(f"  {row['prompt']!r} -> {row['response']!r} (answer {row['answer']}, "
                  f"reward {row['reward']:g}, last number right {row['gsm8k_reward']:g}, "
                  f"math_lenient {row['math_lenient_reward']:g})")


if __name__ == "__main__":
    main()
