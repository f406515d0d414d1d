"""A held-out evaluation's sampling on the real model: transformers (each prompt prefilled once
for its samples, and before: once per sample) against vLLM, in one run.

The work of one policy's evaluation in the README's "A real model" recipe: the packaged
SmolLM2-135M-Instruct, the recipe's held-out prompts rendered with its chat template,
`--samples` responses per prompt at temperature 1 and one greedy response, 16 new tokens, then
log pi_ref of the temperature-1 samples (the KL's second term, which a fitted policy's
evaluation pays). Each arm is a whole call as a round pays it: vLLM's two jobs (the samples
and greedy responses in one, the log-probs in the other) each start a worker and an engine;
the transformers arms load the model once. Arms alternate, --repeats
times; the fastest of each counts.

    bash scripts/install.sh --real --vllm
    .venv/bin/python bench/eval_backends.py [--runs-dir runs] [--repeats 2] [--arms transformers,vllm]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyarrow.compute as pc
import torch

from bolt_cli.main import parser as bolt_parser
from bolt_cli.options import build_config
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.model_files import converted_model
from bolt_tasks.policy.modeling import load_policy
from bolt_tasks.sampling.backends import VllmSampler, evaluation_sampling
from bolt_tasks.sampling.decode import generate
from bolt_tasks.sampling.rollouts import render_task_prompts
from bolt_tasks.sampling.seeds import row_seeds
from bolt_tasks.stages.prompt_files import build_prompts
from grpo_vs_bolt_real import README_RECIPE
from provenance import provenance


def transformers_arm(model_dir: str, prompt_ids, evaluation, shared: bool) -> dict:
    start = time.perf_counter()
    model, tokenizer = load_policy(model_dir)
    m = evaluation.samples_per_prompt
    repeated = [ids for ids in prompt_ids for _ in range(m)]
    seeds = row_seeds(list(range(len(prompt_ids))), m)
    sampled = generate(model, tokenizer, repeated, 1.0, evaluation.max_new_tokens,
                       evaluation.batch_size, seeds, share_prefixes=shared)
    generate(model, tokenizer, prompt_ids, 0.0, evaluation.max_new_tokens, evaluation.batch_size,
             0, share_prefixes=shared)
    response_logprobs(model, repeated, sampled.token_ids, tokenizer.pad_token_id,
                      batch_size=evaluation.batch_size, share_prefixes=shared)
    return {"seconds": time.perf_counter() - start,
            "tokens": sum(map(len, sampled.token_ids)) + len(prompt_ids)}


def vllm_arm(model_dir: str, prompt_ids, evaluation) -> dict:
    start = time.perf_counter()
    sampler, m = VllmSampler(), evaluation.samples_per_prompt
    at_one = evaluation_sampling(evaluation.model_copy(update={"backend": "vllm"}), m, 1.0, [])
    greedy = evaluation_sampling(evaluation.model_copy(update={"backend": "vllm"}), 1, 0.0, [])
    seeds = list(range(len(prompt_ids)))
    sampled, _ = sampler.sample_passes(model_dir, prompt_ids, [at_one, greedy], seeds=seeds)
    repeated = [ids for ids in prompt_ids for _ in range(m)]
    sampler.response_logprobs(model_dir, repeated, sampled.token_ids, at_one)
    return {"seconds": time.perf_counter() - start,
            "tokens": sum(map(len, sampled.token_ids)) + len(prompt_ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16, help="temperature-1 samples per prompt")
    parser.add_argument("--out", default="bench-results/eval_backends.json")
    parser.add_argument("--arms", default="transformers-unshared,transformers,vllm",
                        help="comma-separated; the unshared arm is the slowest by far")
    args = parser.parse_args()
    config = build_config(bolt_parser().parse_args(README_RECIPE + ["--runs-dir", args.runs_dir]))
    evaluation = config.evaluation.model_copy(update={"samples_per_prompt": args.samples})
    model_dir = str(converted_model(RunsDirectory.at(args.runs_dir), config.reference.model))
    prompts = build_prompts(config.task)
    heldout = prompts.filter(pc.equal(prompts["split"], "heldout"))
    _, tokenizer = load_policy(model_dir, torch.device("cpu"))
    _, prompt_ids = render_task_prompts(tokenizer, heldout, config.task)
    arms = {"transformers-unshared": lambda: transformers_arm(model_dir, prompt_ids, evaluation, False),
            "transformers": lambda: transformers_arm(model_dir, prompt_ids, evaluation, True),
            "vllm": lambda: vllm_arm(model_dir, prompt_ids, evaluation)}
    wanted = args.arms.split(",")
    if unknown := set(wanted) - set(arms):
        raise SystemExit(f"--arms: unknown {sorted(unknown)}; choose from {sorted(arms)}")
    arms = {name: arms[name] for name in wanted}
    runs = {name: [] for name in arms}
    for repeat in range(args.repeats):
        for name, arm in arms.items():
            runs[name].append(arm())
            print(f"{name} repeat {repeat}: {runs[name][-1]['seconds']:.1f} s", flush=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    report = {"prompts": len(prompt_ids), "samples_per_prompt": args.samples,
              "max_new_tokens": evaluation.max_new_tokens, "runs": runs, "best_seconds": best,
              "speedup_over_first_arm": {n: round(best[wanted[0]] / s, 2) for n, s in best.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report | {"provenance": provenance()}, indent=2))
    print(json.dumps(report["best_seconds"]), json.dumps(report["speedup_over_first_arm"]))


if __name__ == "__main__":  # the vLLM worker is a separate process; the guard keeps imports clean
    main()
