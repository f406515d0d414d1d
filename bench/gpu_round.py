"""GPU round check: one complete small BOLT round on one GPU through the stage functions.

The round `bolt run` runs, stage for stage, through the Python API's plain functions (no Prefect,
MLflow or caching): the built-in task's prompts, the embedded reference bootstrapped, rollouts
from the transformers sampler in the sampler dtype (`auto`: bfloat16 on CUDA) with log pi_ref
rescored in float32, the verifier, the weights in DuckDB (sql/), the weighted-SFT fit in this
process (bf16 autocast on CUDA) and again under torchrun (NCCL on a GPU, gloo on a CPU; one
process), both held-out evaluations, the projection-gap log-prob pass and the comparison
(sql/eval.sql). For each stage: wall-clock, peak GPU memory, and the GPU memory this process
still holds after it (0 when the stage released everything, as a round's flow process must).

Checks (a failure exits with status 1): the inline and torchrun fits' per-step losses agree
(relative 1e-4 in float32 on a CPU; 2e-2 under bf16 autocast, 2^-8 per rounding, on a GPU); the
process holds no model and no allocated GPU memory after every stage; every figure is finite.

A bare GPU machine has torch, transformers, pyarrow and rich but no pydantic or DuckDB: they
travel as wheels (scripts/gpu_wheels.sh), and bench/gpu_node_check.sh installs them first.
Prefect, MLflow, vLLM and Ray are never imported (CI's dry run makes them unimportable, in this
process and in torchrun's).

    bash bench/gpu_node_check.sh          # on the GPU machine: this and bench/gpu_check.py
    python bench/gpu_round.py --dry-run   # a tiny round on the CPU: what CI runs
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the GPU image does not have the project installed
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from bench.provenance import provenance  # noqa: E402
from bolt import (  # noqa: E402
    RoundConfig,
    evaluate_policy,
    sample_rollouts,
    score_rollouts,
    train_policy,
    write_prompts,
    write_weights,
)
from bolt_tasks.core.memory import live_models, release_accelerator_memory  # noqa: E402
from bolt_tasks.policy.torchrun import train_with_torchrun  # noqa: E402
from bolt_tasks.sampling.backends import with_resolved_backend  # noqa: E402
from bolt_tasks.stages.comparison import combine_evaluations, heldout_summary  # noqa: E402
from bolt_tasks.stages.evaluation import sample_logprobs  # noqa: E402
from bolt_tasks.stages.reference import train_reference  # noqa: E402
from bolt_tasks.stages.weights import summarize_prompt_stats  # noqa: E402

LOSS_TOLERANCE = {"cuda": 2e-2, "cpu": 1e-4}
# A small round of the built-in task: half the default round's training prompts with N = 16
# samples each, as the GPU recipe draws, and its default 1,500-step reference.
GPU_ROUND = {
    "pipeline": "gpu-round",
    "task": {"train_prompts": 512, "heldout_prompts": 256},
    "sampling": {"samples_per_prompt": 16, "backend": "transformers", "dtype": "auto"},
    "training": {"batch_size": 64, "epochs": 2, "max_tokens_per_micro_batch": 65536},
    "evaluation": {"samples_per_prompt": 32},
}
DRY_ROUND = {
    "pipeline": "gpu-round-dry",
    "task": {"train_prompts": 24, "heldout_prompts": 16},
    "reference": {"steps": 60, "batch_size": 32},
    "sampling": {"samples_per_prompt": 4, "backend": "transformers", "dtype": "auto"},
    "training": {"batch_size": 16, "epochs": 1},
    "evaluation": {"samples_per_prompt": 8},
}


class Stages:
    """Times each stage and reads the GPU's memory around it."""

    def __init__(self, device: torch.device):
        self.device, self.records, self.problems = device, [], []

    def run(self, name: str, function, *args, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        result = function(*args, **kwargs)
        seconds = time.perf_counter() - started
        release_accelerator_memory()  # what the round's task wrapper does after every stage
        record = {"stage": name, "seconds": round(seconds, 3), "models_held_after": live_models()}
        if self.device.type == "cuda":
            record["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 1e9, 3)
            record["allocated_after_gb"] = round(torch.cuda.memory_allocated(self.device) / 1e9, 6)
            if record["allocated_after_gb"] > 0:
                self.problems.append(f"{name}: {record['allocated_after_gb']} GB still allocated")
        if record["models_held_after"]:
            self.problems.append(f"{name}: this process still holds {record['models_held_after']}")
        self.records.append(record)
        print(f"{name}: {seconds:.1f} s" + (f", peak {record['peak_memory_gb']} GB"
                                            if "peak_memory_gb" in record else ""), flush=True)
        return result


def losses(log_path: Path) -> list[float]:
    return pq.read_table(log_path).column("loss").to_pylist()


def relative_gap(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)), default=0.0)


def run_round(config: RoundConfig, work: Path, device: torch.device) -> dict:
    stages = Stages(device)
    task, reference_dir = config.task, work / "reference"
    prompts_ref = stages.run("prompts", write_prompts, task, work / "prompts.parquet")
    prompts = prompts_ref.read()
    stages.run("bootstrap reference", train_reference, config.reference, task.seed,
               task.heldout_prompts, reference_dir)
    reference = str(reference_dir)
    rollouts = stages.run("sample rollouts", sample_rollouts, prompts, reference, reference,
                          config.sampling, task, 0, work / "rollouts.parquet")
    rewards = stages.run("score rollouts", score_rollouts, prompts, rollouts.read(), task,
                         work / "rewards.parquet")
    weights, stats = stages.run("weights (DuckDB)", write_weights, rollouts.path, rewards.path,
                                config.weighting, work / "weights.parquet",
                                work / "prompt_stats.parquet")
    policy = str(work / "policy")
    stages.run("weighted SFT (in this process)", train_policy, rollouts.read(), weights.read(),
               reference, config.training, policy, work / "train_log.parquet")
    torchrun = config.training.model_copy(update={"launcher": "torchrun", "nproc_per_node": 1})
    stages.run("weighted SFT (torchrun, 1 process)", train_with_torchrun, rollouts.path,
               weights.path, reference, torchrun, str(work / "policy-torchrun"),
               str(work / "train_log_torchrun.parquet"))
    evaluated = {}
    for name, model in (("reference", reference), ("policy", policy)):
        evaluated[name] = stages.run(
            f"evaluate {name}", evaluate_policy, prompts, model, reference, config.evaluation, task,
            work / f"{name}_eval.parquet", work / f"{name}_samples.parquet", config.sampling.stop)
    policy_logprobs = stages.run(
        "projection-gap log-probs", sample_logprobs, evaluated["reference"][1].read(), policy,
        work / "policy_logprobs.parquet", config.evaluation.batch_size)
    comparison = stages.run(
        "compare (sql/eval.sql)", combine_evaluations, evaluated["reference"][0].path,
        evaluated["policy"][0].path, evaluated["reference"][1].path, policy_logprobs.path,
        config.weighting.beta, work / "eval.parquet")
    figures = heldout_summary(comparison.path, config.weighting.beta).model_dump()
    inline, distributed = losses(work / "train_log.parquet"), losses(work / "train_log_torchrun.parquet")
    gap = relative_gap(inline, distributed)
    if gap > LOSS_TOLERANCE[device.type]:
        stages.problems.append(f"torchrun's losses differ from the inline fit's by {gap:.3g} (relative)")
    numbers = [v for v in figures.values() if isinstance(v, float)] + inline
    if not all(math.isfinite(v) for v in numbers):
        stages.problems.append("a held-out figure or a loss is not finite")
    return {"stages": stages.records, "heldout": figures, "weights": summarize_prompt_stats(stats.path),
            "fit_loss_first_last": [inline[0], inline[-1]], "torchrun_loss_relative_gap": gap,
            "problems": stages.problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="a tiny round on the CPU (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "gpu_round.json")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the round's tables and policies go (a temporary folder)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if args.dry_run and torch.cuda.is_available():
        parser.error("--dry-run is the CPU's tiny round; run it where no GPU is visible")
    config = with_resolved_backend(RoundConfig.model_validate(DRY_ROUND if args.dry_run else GPU_ROUND))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        result = run_round(config, Path(work), device)
    result.update(provenance=provenance(), device=device.type, dry_run=args.dry_run,
                  sampler_dtype=config.sampling.dtype, total_seconds=round(time.perf_counter() - started, 1),
                  config=config.model_dump(mode="json"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    heldout = result["heldout"]
    print(json.dumps({k: heldout[k] for k in sorted(heldout) if "accuracy" in k or "kl" in k.lower()}))
    for problem in result["problems"]:
        print(f"FAILED: {problem}", file=sys.stderr)
    print(f"{'FAILED' if result['problems'] else 'passed'}: {result['total_seconds']} s; {args.out}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
