"""Training sequences per second: BOLT's weighted-SFT fit against TRL's SFTTrainer, in one run.

Same model, same rollouts (token ids of prompt-completion pairs, loss on the completion only),
the same sequences per optimizer step, one process each, alternating, on this CPU. The rollouts
come as a round's do: --samples-per-prompt responses to each prompt. Two models:
  - wide: a random-weight llama of the built-in task's tokenizer, 8 layers x 512 (25M
    parameters), prompts of 8-12 tokens and responses of 1-32;
  - smollm2: the packaged SmolLM2-135M-Instruct (the `real` extra) on the README's "A real
    model" recipe: prompts of 50-70 tokens (a chat-templated reasoning-gym question), responses
    of 4-16, 8 per prompt.
Three trainers: bolt (the trainer as it runs: batches of whole prompt groups, each prompt
computed once for its responses, micro-batches by width), bolt-unshared (the trainer before:
rollouts shuffled one by one, every sequence padded and computed whole: training.batch_order=
rollouts, training.share_prompt_prefix=false) and trl. Each runs --steps
optimizer steps from the same starting weights (its whole train call timed: data loading,
forward, backward, AdamW). Sequences and tokens (prompt and response tokens trained on, padding
excluded) are the same for all; the ratios are BOLT / TRL.

    pip install -e ".[grpo,real]"
    python bench/train_throughput.py [--runs-dir runs] [--models wide,smollm2] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import provenance

SHAPES = {"wide": ((8, 12), (1, 32)), "smollm2": ((50, 70), (4, 16))}
TRAINERS = ("bolt", "bolt-unshared", "trl")


def model_dir(name: str, runs_dir: str, scratch: Path) -> Path:
    if name == "wide":
        sys.path.insert(0, str(Path(__file__).parent))
        from sampler_throughput import wide_model

        return wide_model(scratch / "wide")
    from bolt_tasks.core.catalogue import RunsDirectory
    from bolt_tasks.policy.model_files import converted_model

    return converted_model(RunsDirectory.at(runs_dir), "smollm2-135m-instruct")


def rollouts(name: str, vocabulary: int, sequences: int, per_prompt: int,
             seed: int = 0) -> list[tuple[list, list]]:
    """Prompt-major: per_prompt responses to each prompt, as a round's rollouts table holds them."""
    (prompt_low, prompt_high), (response_low, response_high) = SHAPES[name]
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < sequences:
        prompt = rng.integers(3, vocabulary, rng.integers(prompt_low, prompt_high + 1)).tolist()
        pairs += [(prompt, rng.integers(3, vocabulary, rng.integers(response_low, response_high + 1)).tolist())
                  for _ in range(per_prompt)]
    return pairs[:sequences]


def run_bolt(model_path: Path, examples: list, batch_size: int, shared: bool = True) -> float:
    import torch

    from bolt_tasks.core.config import TrainingConfig
    from bolt_tasks.policy.training import fit, prepare_model

    training = TrainingConfig(epochs=1, batch_size=batch_size, learning_rate=1e-5, warmup_steps=0,
                              batch_order="prompt_groups" if shared else "rollouts",
                              share_prompt_prefix=shared)
    model, tokenizer = prepare_model(str(model_path), training, torch.device("cpu"))
    weighted = [(prompt, response, 1.0) for prompt, response in examples]
    started = time.perf_counter()
    fit(model, tokenizer.pad_token_id, weighted, training)
    return time.perf_counter() - started


def run_trl(model_path: Path, examples: list, batch_size: int) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    # Already tokenized: TRL trains on these ids as they are, loss where completion_mask is 1.
    dataset = Dataset.from_list([{"input_ids": prompt + response,
                                  "completion_mask": [0] * len(prompt) + [1] * len(response)}
                                 for prompt, response in examples])
    with tempfile.TemporaryDirectory() as output:
        args = SFTConfig(
            output_dir=output, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
            num_train_epochs=1, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
            max_grad_norm=1.0, use_cpu=True, bf16=False, report_to=[], logging_steps=1000,
            save_strategy="no", dataloader_num_workers=0, completion_only_loss=True,
            max_length=None, seed=0, disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def worker(trainer: str, name: str, model_path: Path, sequences: int, batch_size: int,
           per_prompt: int) -> None:
    from transformers import AutoConfig

    vocabulary = AutoConfig.from_pretrained(str(model_path)).vocab_size
    examples = rollouts(name, vocabulary, sequences, per_prompt)
    if trainer == "trl":
        seconds = run_trl(model_path, examples, batch_size)
    else:
        seconds = run_bolt(model_path, examples, batch_size, shared=trainer == "bolt")
    tokens = sum(len(p) + len(r) for p, r in examples)
    print(json.dumps({"seconds": seconds, "tokens": tokens, "sequences": len(examples)}))


def measure(trainer: str, name: str, model_path: Path, sequences: int, batch_size: int,
            per_prompt: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", trainer, "--models", name, "--model-path",
         str(model_path), "--sequences", str(sequences), "--batch-size", str(batch_size),
         "--samples-per-prompt", str(per_prompt)],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    return result | {"tokens_per_second": round(result["tokens"] / result["seconds"], 1),
                     "sequences_per_second": round(result["sequences"] / result["seconds"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--models", default="wide,smollm2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per optimizer step")
    parser.add_argument("--samples-per-prompt", type=int, default=8, help="responses to each prompt")
    parser.add_argument("--repeats", type=int, default=2, help="runs per trainer, alternating; the best counts")
    parser.add_argument("--out", default="bench-results/train_throughput.json")
    parser.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--sequences", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.models, Path(args.model_path), args.sequences, args.batch_size,
               args.samples_per_prompt)
        return

    report = {"machine": f"{os.cpu_count()} CPU cores", "batch_size": args.batch_size,
              "steps": args.steps, "samples_per_prompt": args.samples_per_prompt}
    sequences = args.steps * args.batch_size
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            path = model_dir(name, args.runs_dir, Path(scratch))
            runs = {trainer: [] for trainer in TRAINERS}
            for _ in range(args.repeats):
                for trainer in TRAINERS:
                    runs[trainer].append(measure(trainer, name, path, sequences, args.batch_size,
                                                 args.samples_per_prompt))
                    print(f"  {name:8s} {trainer:13s} {runs[trainer][-1]}", flush=True)
            best = {t: max(r["sequences_per_second"] for r in rs) for t, rs in runs.items()}
            report[name] = {"runs": runs, "best_sequences_per_second": best,
                            "bolt_over_trl": round(best["bolt"] / best["trl"], 2),
                            "bolt_unshared_over_trl": round(best["bolt-unshared"] / best["trl"], 2)}
            print(f"{name}: sequences/s BOLT {best['bolt']:.2f}, BOLT unshared "
                  f"{best['bolt-unshared']:.2f}, TRL {best['trl']:.2f}; BOLT / TRL "
                  f"{report[name]['bolt_over_trl']} (unshared {report[name]['bolt_unshared_over_trl']})",
                  flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report | {"provenance": provenance()}, indent=2))


if __name__ == "__main__":
    main()
