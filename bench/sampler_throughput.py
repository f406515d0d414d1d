"""Generated tokens per second: BOLT's transformers sampler against the vLLM sampler.

Same model, same prompts (the built-in task's training prompts), same settings (N samples per
prompt at temperature 1, the same max_new_tokens, stop at EOS), the same thread count for both,
measured in one run, alternating backends. Two models:
  - embedded: the reference policy `bolt run` builds (2 layers, width 128, 0.3M parameters),
    with the default round's sampling (1000 prompts x 8, up to 5 tokens);
  - wide: a random-weight llama of the same tokenizer, 8 layers, width 512 (25M parameters),
    up to 32 tokens, where per-token model compute, not per-step overhead, dominates.
Reported per backend: tokens/s over sampling alone (model loaded, engine started) and over the
whole call a round pays (transformers: load + sample; vLLM: the worker process end to end,
interpreter and engine start included). The ratio is vLLM / transformers.

    bash scripts/install.sh --vllm
    .venv/bin/python bench/sampler_throughput.py [--runs-dir runs] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import ReferenceConfig, SamplingConfig, TaskConfig
from bolt_tasks.policy.character_tokenizer import character_tokenizer
from bolt_tasks.policy.modeling import (
    encode_prompts,
    load_policy,
    load_tokenizer,
    pick_device,
)
from bolt_tasks.sampling.backends import TransformersSampler, VllmSampler
from bolt_tasks.sampling.decode import generate
from bolt_tasks.sampling.vllm_backend import worker_environment
from bolt_tasks.stages.arithmetic import prompts_table
from bolt_tasks.stages.reference import embedded_reference_dir, train_reference


def wide_model(out_dir: Path) -> Path:
    tokenizer = character_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=128,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def embedded_model(runs_dir: str) -> Path:
    reference, task = ReferenceConfig(), TaskConfig()
    directory = embedded_reference_dir(RunsDirectory.at(runs_dir), reference, task)
    if not (directory / "model.safetensors").exists():
        train_reference(reference, task.seed, task.heldout_prompts, directory)
    return directory


def measure_transformers(model_dir: Path, prompt_ids, sampling: SamplingConfig) -> dict:
    start = time.perf_counter()
    result = TransformersSampler().sample(str(model_dir), prompt_ids, sampling)
    total = time.perf_counter() - start
    # Sampling alone: the same generation again, with the model already loaded and warm.
    model, tokenizer = load_policy(model_dir)
    repeated = [ids for ids in prompt_ids for _ in range(sampling.samples_per_prompt)]
    start = time.perf_counter()
    again = generate(model, tokenizer, repeated, sampling.temperature, sampling.max_new_tokens,
                     sampling.batch_size, sampling.seed)
    sampling_seconds = time.perf_counter() - start
    return {"tokens": sum(map(len, again.token_ids)), "sampling_seconds": sampling_seconds,
            "call_tokens": sum(map(len, result.token_ids)), "call_seconds": total}


def measure_vllm(model_dir: Path, prompt_ids, sampling: SamplingConfig) -> dict:
    start = time.perf_counter()
    result = VllmSampler.sample_job(str(model_dir), prompt_ids, sampling)
    total = time.perf_counter() - start
    tokens = int(result["offsets"][-1])
    return {"tokens": tokens, "sampling_seconds": float(result["work_seconds"]),
            "engine_start_seconds": float(result["startup_seconds"]),
            "call_tokens": tokens, "call_seconds": total}


def best(runs: list[dict]) -> dict:
    fastest = min(runs, key=lambda r: r["sampling_seconds"])
    quickest_call = min(runs, key=lambda r: r["call_seconds"])
    return fastest | {
        "tokens_per_second": fastest["tokens"] / fastest["sampling_seconds"],
        "call_tokens_per_second": quickest_call["call_tokens"] / quickest_call["call_seconds"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--wide-prompts", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the vLLM worker's engine threads

    task = TaskConfig()
    prompts = prompts_table(task.seed, task.train_prompts, task.heldout_prompts)
    texts = prompts.filter(pc.equal(prompts["split"], "train"))["prompt"].to_pylist()
    results = {"device": str(pick_device()), "threads": args.threads,
               "cpu": platform.processor() or platform.machine(),
               "vllm_environment": {k: v for k, v in worker_environment(
                   pick_device().type == "cuda").items() if k.startswith(("VLLM_", "OMP_"))},
               "workloads": {}}
    with tempfile.TemporaryDirectory() as scratch:
        workloads = {
            "embedded": (embedded_model(args.runs_dir), texts, 5),
            "wide": (wide_model(Path(scratch) / "wide"), texts[: args.wide_prompts], 32),
        }
        for name, (model_dir, workload_texts, max_new_tokens) in workloads.items():
            prompt_ids = encode_prompts(load_tokenizer(model_dir), workload_texts)
            sampling = SamplingConfig(samples_per_prompt=8, temperature=1.0,
                                      max_new_tokens=max_new_tokens, seed=0)
            runs = {"transformers": [], "vllm": []}
            for repeat in range(args.repeats):
                for backend, measure in (("transformers", measure_transformers),
                                         ("vllm", measure_vllm)):
                    runs[backend].append(measure(model_dir, prompt_ids, sampling))
                    print(f"{name} {backend} repeat {repeat}: {runs[backend][-1]}", flush=True)
            summary = {backend: best(r) for backend, r in runs.items()}
            summary["settings"] = {"prompts": len(prompt_ids), "samples_per_prompt": 8,
                                   "temperature": 1.0, "max_new_tokens": max_new_tokens,
                                   "transformers_batch_size": sampling.batch_size}
            summary["ratio_vllm_over_transformers"] = (
                summary["vllm"]["tokens_per_second"] / summary["transformers"]["tokens_per_second"])
            summary["call_ratio_vllm_over_transformers"] = (
                summary["vllm"]["call_tokens_per_second"]
                / summary["transformers"]["call_tokens_per_second"])
            results["workloads"][name] = summary
    out = Path(args.runs_dir) / "bench" / "sampler_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for name, summary in results["workloads"].items():
        t, v = summary["transformers"], summary["vllm"]
        print(f"{name}: transformers {t['tokens_per_second']:.0f} tok/s, vLLM "
              f"{v['tokens_per_second']:.0f} tok/s, ratio {summary['ratio_vllm_over_transformers']:.2f}"
              f" | whole call: {t['call_tokens_per_second']:.0f} vs {v['call_tokens_per_second']:.0f}"
              f" tok/s, ratio {summary['call_ratio_vllm_over_transformers']:.2f}")
    print(f"threads {args.threads}, device {results['device']}, vLLM worker environment "
          f"{results['vllm_environment']}; written to {out}")


if __name__ == "__main__":  # the vLLM worker is a separate process; the guard keeps imports clean
    main()
