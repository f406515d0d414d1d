"""GPU check: weighted-SFT training and transformers sampling on one GPU, with MFU and a loss check.

A prepared script for a bare GPU machine (torch, transformers, pyarrow; no prefect, mlflow,
duckdb, vLLM, pydantic or network). The model is a randomly initialised Qwen2.5-0.5B shape
(24 layers, hidden 896, intermediate 4864, 14 heads, 2 KV heads, vocabulary 151936, tied
embeddings, rope theta 1e6) with float32 parameters, as load_policy loads a policy; the project's
training path runs it under bf16 autocast (--param-dtype bfloat16 makes the weights bf16 too).

Measured, each configuration after its warm-up steps, with torch.cuda.synchronize around the
timed region, and peak memory (max_memory_allocated, reset per configuration):
  - the weighted-SFT step as `fit` runs it (forward, backward, clipping, AdamW) on one
    micro-batch of token_budgets tokens (random prompt_tokens + response_tokens sequences), with
    and without gradient checkpointing, padded (`weighted_nll`) and packed as the trainer packs
    by default (`weighted_group_nll`: group_size responses per prompt, the prompt once). Tokens/s
    and MFU count the padded sequences' positions in both: packed figures are the same work.
  - the sampler: the project's `generate` (bolt_tasks/sampling/decode.py), sampler_prompts
    random prompts x sampler_new_tokens at temperature 1; EOS is id -1, never sampled, so every
    row runs the full length.
  - correctness: the loss of a small batch on the GPU (the training path: bf16 autocast) against
    the same weights copied to the CPU in float32, |gpu - cpu| / |cpu| <= 2e-2 (bf16 keeps 8
    mantissa bits, 2^-8 = 4e-3 per rounding), and the per-sequence log-probs in excess of the
    uniform distribution's (the part the weights decide, not |response| x log |V|) correlating
    >= 0.9; the packed loss equals the padded one within the same tolerance. A failure exits
    with status 1; a configuration that raised anything but OOM (recorded as "OOM", and the rest
    go on) exits with status 2.

MFU = achieved model FLOP/s / --peak-flops (989e12: H100 SXM dense bf16; the H200's is the same),
model FLOPs per token 6 N + 12 L H S (PaLM, arXiv:2204.02311, appendix B): N the weights of every
nn.Linear (the tied LM head once), L layers, hidden H, sequence length S, the causal mask not
halved; recomputation (checkpointing, the log-prob chunks) not counted. The loss skips the LM
head on prompt-only chunks, so 6N counts about 6% more than runs at 128 + 384.

    bash bench/gpu_check.sh [--out bench-results/gpu_check.json] [--time-budget-s 420]
    python bench/gpu_check.py --dry-run     # tiny model on the CPU: what CI runs
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import sys
import time
import types
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the GPU image does not have the project installed
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from bench.gpu_check_output import print_table, write  # noqa: E402

PEAK_BF16_DENSE_H100 = 989e12
LOSS_RELATIVE_TOLERANCE = {"cuda": 2e-2, "cpu": 1e-4}  # bf16 autocast; float32 against float64
MIN_EXCESS_CORRELATION = 0.9


@dataclass
class Settings:
    token_budgets: tuple[int, ...] = (16384, 32768)
    prompt_tokens: int = 128
    response_tokens: int = 384
    warmup_steps: int = 2
    steps: int = 5
    sampler_prompts: int = 256
    sampler_prompt_tokens: int = 128
    sampler_new_tokens: int = 128
    check_sequences: int = 8
    group_size: int = 16


DRY_RUN = Settings(token_budgets=(128, 256), prompt_tokens=8, response_tokens=24, warmup_steps=1,
                   steps=2, sampler_prompts=8, sampler_prompt_tokens=8, sampler_new_tokens=8,
                   group_size=4)


def import_project():
    """(weighted_nll, weighted_group_nll, group_by_prompt, generate): the project's own functions.
    Their modules import two that a bare GPU image may lack: core.progress (a progress bar: rich)
    and core.config (pydantic models, which these functions never use); stand-ins replace those
    two, always, so what runs does not depend on what happens to be installed (bench/gpu_round.py
    runs the real ones, with pydantic carried as a wheel)."""
    progress = types.ModuleType("bolt_tasks.core.progress")
    progress.track = lambda items, total, description: iter(items)
    config = types.ModuleType("bolt_tasks.core.config")
    config.TrainingConfig = type("TrainingConfig", (), {})  # an annotation in training.py
    sys.modules.setdefault("bolt_tasks.core.progress", progress)
    sys.modules.setdefault("bolt_tasks.core.config", config)
    from bolt_tasks.policy.shared_prefix import group_by_prompt
    from bolt_tasks.policy.training import weighted_group_nll, weighted_nll
    from bolt_tasks.sampling.decode import generate

    return weighted_nll, weighted_group_nll, group_by_prompt, generate


def qwen_config(dry_run: bool) -> Qwen2Config:
    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512) if dry_run else dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936)
    rope = {"rope_type": "default", "rope_theta": 1e6}
    return Qwen2Config(**shape, tie_word_embeddings=True, max_position_embeddings=32768,
                       rms_norm_eps=1e-6, rope_parameters=rope, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2)


def build_model(config: Qwen2Config, device: torch.device, dtype: torch.dtype):
    torch.manual_seed(0)
    with device:  # initialised where it runs: 0.5B random floats are slow to make on a CPU
        model = Qwen2ForCausalLM(config)
    return model.to(dtype)


def matmul_parameters(model) -> int:
    """N of the FLOPs formula: the weights of every nn.Linear (the tied LM head once)."""
    weights = {id(m.weight): m.weight.numel() for m in model.modules()
               if isinstance(m, torch.nn.Linear)}
    return sum(weights.values())


def flops_per_token(matmul_params: int, layers: int, hidden: int, sequence: int) -> int:
    """Model FLOPs of one training token, forward and backward: 6N + 12 L H S."""
    return 6 * matmul_params + 12 * layers * hidden * sequence


def mfu(tokens_per_second: float, per_token_flops: float, peak_flops: float) -> float:
    return tokens_per_second * per_token_flops / peak_flops


def random_sequences(count: int, prompt: int, response: int, vocab: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (count, prompt + response), generator=generator).tolist()
    weights = torch.rand(count, generator=generator, dtype=torch.float32) + 0.5
    return [row[:prompt] for row in ids], [row[prompt:] for row in ids], weights


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(device: torch.device):
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def set_checkpointing(model, on: bool) -> None:
    """As prepare_model does: checkpointing on, the KV cache off (and back)."""
    if on:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()
    model.config.use_cache = not on


def training_loss(project, packed: bool, prompts, responses, weights):
    """The loss as fit computes it for one micro-batch: padded rows, or packed groups (one row
    per prompt, the weights in the groups' order)."""
    weighted_nll, weighted_group_nll, group_by_prompt, _ = project
    if not packed:
        return lambda model: weighted_nll(model, prompts, responses, weights, pad_id=0)
    groups = group_by_prompt(prompts, responses)
    ordered = [float(weights[i]) for group in groups for i in group.indices]
    return lambda model: weighted_group_nll(model, groups, ordered, 0, len(prompts))


def measure_training(model, project, budget: int, checkpointing: bool, packed: bool, s: Settings,
                     device: torch.device, per_token_flops: int, peak_flops: float) -> dict:
    sequence = s.prompt_tokens + s.response_tokens
    count = max(1, budget // sequence)
    prompts, responses, weights = random_sequences(
        count, s.prompt_tokens, s.response_tokens, model.config.vocab_size, seed=budget)
    if packed:  # group_size responses to each prompt, as N samples per prompt are
        prompts = [prompts[i - i % s.group_size] for i in range(count)]
    loss_of = training_loss(project, packed, prompts, responses, weights)
    set_checkpointing(model, checkpointing)
    model.train()
    # fit's optimizer and clipping; a small learning rate keeps the random weights sane
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.99), weight_decay=0.0)
    times = []
    try:
        for step in range(s.warmup_steps + s.steps):
            sync(device)
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(model)
            loss.backward()
            value = loss.item()  # fit reads every micro-batch's loss (a synchronisation)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            sync(device)
            if step >= s.warmup_steps:
                times.append(time.perf_counter() - started)
            if not math.isfinite(value):
                raise FloatingPointError(f"loss {value} at step {step}")
    finally:
        model.zero_grad(set_to_none=True)  # the next configuration starts from empty memory
    tokens = count * sequence
    tokens_per_second = tokens * len(times) / sum(times)
    positions = tokens - (count - math.ceil(count / s.group_size)) * s.prompt_tokens if packed else tokens
    return {"tokens_per_step": tokens, "positions_per_step": positions, "sequences": count,
            "sequence_length": sequence,
            "step_seconds": sum(times) / len(times), "step_seconds_all": times,
            "tokens_per_second": tokens_per_second,
            "mfu": mfu(tokens_per_second, per_token_flops, peak_flops),
            "peak_memory_gb": peak_gb(device), "last_loss": value}


def measure_sampler(model, generate, s: Settings, device: torch.device) -> dict:
    set_checkpointing(model, False)
    model.eval()
    tokenizer = types.SimpleNamespace(eos_token_id=-1, pad_token_id=0)  # -1: never sampled
    prompts, _, _ = random_sequences(s.sampler_prompts, s.sampler_prompt_tokens, 0,
                                     model.config.vocab_size, seed=1)
    generate(model, tokenizer, prompts[:4], 1.0, 4, 4, seed=0)  # warm-up: kernels, allocator
    sync(device)
    started = time.perf_counter()
    out = generate(model, tokenizer, prompts, 1.0, s.sampler_new_tokens, len(prompts), seed=0)
    sync(device)
    seconds = time.perf_counter() - started
    tokens = sum(map(len, out.token_ids))
    return {"prompts": len(prompts), "prompt_tokens": s.sampler_prompt_tokens,
            "max_new_tokens": s.sampler_new_tokens, "generated_tokens": tokens,
            "seconds": seconds, "tokens_per_second": tokens / seconds,
            "peak_memory_gb": peak_gb(device)}


def check_losses(model, weighted_nll, prompts, responses, weights) -> tuple[float, torch.Tensor]:
    """(the weighted loss of the batch, padded as training pads it; each sequence's log-prob,
    one sequence per call, weight 1)."""
    with torch.no_grad():
        loss = weighted_nll(model, prompts, responses, weights, 0).item()
        logprobs = torch.stack([-weighted_nll(model, [p], [r], torch.ones(1), 0).cpu()
                                for p, r in zip(prompts, responses)]).double()
    return loss, logprobs


def check_loss(model, weighted_nll, s: Settings, device: torch.device) -> dict:
    """The training path's loss on `device` against a higher-precision CPU copy: float32 for a
    GPU (bf16 autocast), float64 for the CPU (float32). The loss is close to |response| x log |V|
    whatever the weights, so the per-sequence log-probs in excess of the uniform distribution's
    (the part the weights decide) must correlate as well."""
    reference_dtype = torch.float32 if device.type == "cuda" else torch.float64
    reference = copy.deepcopy(model).to("cpu", reference_dtype).eval()  # the same weights
    model.eval()
    prompts, responses, weights = random_sequences(
        s.check_sequences, min(32, s.prompt_tokens), min(96, s.response_tokens),
        model.config.vocab_size, seed=2)
    # responses of different lengths, so that the batch is padded as training batches are
    count = len(responses)
    responses = [r[: len(r) // 2 + i * len(r) // (2 * count)] for i, r in enumerate(responses)]
    loss, ours = check_losses(model, weighted_nll, prompts, responses, weights)
    reference_loss, theirs = check_losses(reference, weighted_nll, prompts, responses, weights)
    del reference
    uniform = torch.tensor([len(r) for r in responses], dtype=torch.float64) * math.log(
        model.config.vocab_size)
    correlation = torch.corrcoef(torch.stack([ours + uniform, theirs + uniform]))[0, 1].item()
    relative = abs(loss - reference_loss) / abs(reference_loss)
    tolerance = LOSS_RELATIVE_TOLERANCE[device.type]
    return {"loss": loss, "reference_loss": reference_loss,
            "reference": f"cpu {str(reference_dtype).removeprefix('torch.')}",
            "relative_difference": relative, "relative_tolerance": tolerance,
            "excess_logprob_correlation": correlation,
            "min_excess_logprob_correlation": MIN_EXCESS_CORRELATION,
            "max_abs_logprob_difference": (ours - theirs).abs().max().item(),
            "passed": relative <= tolerance and correlation >= MIN_EXCESS_CORRELATION}


def check_packing(model, project, s: Settings, device: torch.device) -> dict:
    """The packed loss (one row per prompt, its responses after it) against the padded one on the
    same sequences, on `device`: packing must change the arithmetic's order, not the loss."""
    model.eval()
    prompts, responses, weights = random_sequences(
        s.check_sequences, min(32, s.prompt_tokens), min(96, s.response_tokens),
        model.config.vocab_size, seed=3)
    prompts = [prompts[i - i % s.group_size] for i in range(len(prompts))]
    with torch.no_grad():
        padded, packed = (training_loss(project, p, prompts, responses, weights)(model).item()
                          for p in (False, True))
    relative, tolerance = abs(packed - padded) / abs(padded), LOSS_RELATIVE_TOLERANCE[device.type]
    return {"padded_loss": padded, "packed_loss": packed, "relative_difference": relative,
            "relative_tolerance": tolerance, "passed": relative <= tolerance}


def guarded(measure, device: torch.device, started: float, budget_s: float):
    """measure()'s result, "OOM", "skipped: time budget" or "error: ...": one configuration
    failing must not lose the others' figures on a one-shot GPU run."""
    if time.perf_counter() - started > budget_s:
        return "skipped: time budget"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    outcome = None
    try:
        outcome = measure()
    except torch.cuda.OutOfMemoryError:
        outcome = "OOM"
    except Exception as error:  # noqa: BLE001  (recorded, and the exit status says so)
        # some libraries (cuBLAS workspaces) report running out of memory as a RuntimeError
        oom = isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
        outcome = "OOM" if oom else f"error: {type(error).__name__}: {error}"
    # outside the except block: the traceback's frames (activations, optimizer state) are gone
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return outcome


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="a tiny model on the CPU (CI)")
    parser.add_argument("--out", default="bench-results/gpu_check.json")
    parser.add_argument("--time-budget-s", type=float, default=420.0,
                        help="no configuration starts after this many seconds")
    parser.add_argument("--peak-flops", type=float, default=PEAK_BF16_DENSE_H100,
                        help="dense bf16 peak FLOP/s for MFU (H100 and H200: 989e12)")
    parser.add_argument("--token-budgets", default=None,
                        help="tokens per micro-batch, comma-separated (default 16384,32768)")
    parser.add_argument("--param-dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--sampler-dtypes", default="float32,bfloat16")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    settings = DRY_RUN if args.dry_run else Settings()
    if args.token_budgets:
        settings = replace(
            settings, token_budgets=tuple(int(b) for b in args.token_budgets.split(",")))
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --dry-run for the CPU check")
    device = torch.device("cpu" if args.dry_run else "cuda")
    project = import_project()
    weighted_nll, generate = project[0], project[3]
    config = qwen_config(args.dry_run)
    model = build_model(config, device, getattr(torch, args.param_dtype))
    sequence = settings.prompt_tokens + settings.response_tokens
    n_matmul = matmul_parameters(model)
    per_token = flops_per_token(n_matmul, config.num_hidden_layers, config.hidden_size, sequence)
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "dry_run": args.dry_run, "settings": asdict(settings),
        "project_code": {"weighted_nll, weighted_group_nll": "bolt_tasks.policy.training",
                         "generate": "bolt_tasks.sampling.decode",
                         "stand_ins": ["bolt_tasks.core.progress", "bolt_tasks.core.config"]},
        "model": {"architecture": "Qwen2ForCausalLM", "param_dtype": args.param_dtype,
                  "attention": getattr(config, "_attn_implementation", None),
                  "layers": config.num_hidden_layers, "hidden": config.hidden_size,
                  "vocab": config.vocab_size,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "matmul_parameters": n_matmul},
        "flops": {"formula": "6 * matmul_parameters + 12 * layers * hidden * sequence_length",
                  "per_token": per_token, "peak_flops": args.peak_flops},
        "training": [], "sampler": {},
    }
    out = Path(args.out)
    results["correctness"] = check_loss(model, weighted_nll, settings, device)
    results["packing"] = check_packing(model, project, settings, device)
    write(results, out)
    for budget in settings.token_budgets:
        for packed in (False, True):
            for checkpointing in (False, True):
                result = guarded(lambda: measure_training(
                    model, project, budget, checkpointing, packed, settings, device, per_token,
                    args.peak_flops), device, started, args.time_budget_s)
                results["training"].append({"token_budget": budget, "packed": packed,
                                            "checkpointing": checkpointing, "result": result})
                print(f"train {budget} tokens, packed {packed}, checkpointing {checkpointing}: "
                      f"{result}", flush=True)
                write(results, out)
    for dtype in args.sampler_dtypes.split(","):
        model.to(getattr(torch, dtype))  # last use of the model: converted in place
        result = guarded(lambda: measure_sampler(model, generate, settings, device), device,
                         started, args.time_budget_s)
        results["sampler"][dtype] = result
        print(f"sample {dtype}: {result}", flush=True)
        write(results, out)
    results["elapsed_seconds"] = time.perf_counter() - started
    write(results, out)
    print_table(results)
    print(f"elapsed {results['elapsed_seconds']:.1f} s; written to {out}")
    outcomes = [row["result"] for row in results["training"]] + list(results["sampler"].values())
    if not (results["correctness"]["passed"] and results["packing"]["passed"]):
        return 1
    return 2 if any(isinstance(o, str) and o.startswith("error") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
