"""GPU check: weighted-SFT training and transformers sampling on one GPU, with MFU and a loss check.

A prepared script for a bare GPU machine (torch, transformers, pyarrow; no prefect, mlflow,
duckdb, vLLM, pydantic or network). The model is a randomly initialised Qwen2.5-0.5B shape
(24 layers, hidden 896, intermediate 4864, 14 heads, 2 KV heads, vocabulary 151936, tied
embeddings, rope theta 1e6) with float32 parameters, as load_policy loads a policy; the project's
training path runs it under bf16 autocast (--param-dtype bfloat16 makes the weights bf16 too).

Measured, each configuration after its warm-up steps, with torch.cuda.synchronize around the
timed region, and peak memory (max_memory_allocated, reset per configuration):
  - the weighted-SFT step: the project's `weighted_nll` (bolt_tasks/policy/training.py) forward
    and backward on one micro-batch of --token-budgets tokens (sequences of --prompt-tokens +
    --response-tokens random ids), gradient clipping and an AdamW step as `fit` runs them; with
    and without gradient checkpointing. Tokens/s counts every position (prompt and response).
  - the sampler: the project's `generate` (bolt_tasks/sampling/decode.py), --sampler-prompts
    random prompts x --sampler-new-tokens new tokens at temperature 1. EOS is id -1, which no
    sampled token can be, so every row runs the full length; tokens are counted from the output.
  - correctness: the loss of a small batch on the GPU (the training path: bf16 autocast) against
    the same weights copied to the CPU in float32, |gpu - cpu| / |cpu| <= 2e-2 (bf16 keeps 8
    mantissa bits, 2^-8 = 4e-3 per rounding), and the per-sequence log-probs in excess of the
    uniform distribution's (the part the weights decide, not |response| x log |V|) correlating
    >= 0.9. A failure exits with status 1; a configuration that raised anything but OOM
    (recorded as "OOM", and the rest go on) exits with status 2.

MFU = achieved model FLOP/s / --peak-flops (989e12: H100 SXM dense bf16; the H200 has the same
peak), with model FLOPs per token (PaLM, arXiv:2204.02311, appendix B):
    6 * N + 12 * L * H * S
N: the parameters used in matmuls, i.e. the weights of every nn.Linear including the LM head
(tied to the embedding, counted once; the embedding lookup, norms and biases are not matmuls);
6 = 2 (multiply-add) x 3 (forward, and backward for inputs and weights). 12 * L * H * S: the
attention scores and their weighted sum, forward and backward, L layers, hidden H, sequence
length S, without halving for the causal mask. Recomputation (gradient checkpointing, the
checkpointed log-prob chunks) is not counted: this is model FLOPs, not hardware FLOPs. The loss
skips the LM head on prompt-only position chunks, so the head's share of 6N is counted for
positions the step does not run it on (about 6% of the FLOPs at 128 + 384).

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


DRY_RUN = Settings(token_budgets=(128, 256), prompt_tokens=8, response_tokens=24, warmup_steps=1,
                   steps=2, sampler_prompts=8, sampler_prompt_tokens=8, sampler_new_tokens=8)


def import_project():
    """(weighted_nll, generate): the project's own functions. Their modules import two that the
    GPU image cannot: core.progress (a progress bar: prefect, rich) and core.config (pydantic
    models, which weighted_nll and generate never use); stand-ins replace those two, always, so
    what runs does not depend on what happens to be installed."""
    progress = types.ModuleType("bolt_tasks.core.progress")
    progress.track = lambda items, total, description: iter(items)
    config = types.ModuleType("bolt_tasks.core.config")
    config.TrainingConfig = type("TrainingConfig", (), {})  # an annotation in training.py
    sys.modules.setdefault("bolt_tasks.core.progress", progress)
    sys.modules.setdefault("bolt_tasks.core.config", config)
    from bolt_tasks.policy.training import weighted_nll
    from bolt_tasks.sampling.decode import generate

    return weighted_nll, generate


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


def measure_training(model, weighted_nll, budget: int, checkpointing: bool, s: Settings,
                     device: torch.device, per_token_flops: int, peak_flops: float) -> dict:
    sequence = s.prompt_tokens + s.response_tokens
    count = max(1, budget // sequence)
    prompts, responses, weights = random_sequences(
        count, s.prompt_tokens, s.response_tokens, model.config.vocab_size, seed=budget)
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
            loss = weighted_nll(model, prompts, responses, weights, pad_id=0)
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
    return {"tokens_per_step": tokens, "sequences": count, "sequence_length": sequence,
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


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=2))
    os.replace(partial, out)  # written after every configuration: a killed run keeps the rest


def cell(result, key: str, fmt: str) -> str:
    if not isinstance(result, dict):
        return result if key == "tokens_per_second" else ""
    return "-" if result.get(key) is None else format(result[key], fmt)


def print_table(results: dict) -> None:
    print(f"\n{results['device']} | torch {results['torch']} | transformers "
          f"{results['transformers']} | params {results['model']['parameters'] / 1e6:.1f}M")
    print(f"{'configuration':<34}{'tokens/s':>14}{'MFU':>8}{'peak GB':>9}{'step s':>9}")
    for row in results["training"]:
        name = f"train {row['token_budget']} tok, ckpt {'on' if row['checkpointing'] else 'off'}"
        result = row["result"]
        print(f"{name:<34}{cell(result, 'tokens_per_second', ',.0f'):>14}"
              f"{cell(result, 'mfu', '.1%'):>8}{cell(result, 'peak_memory_gb', '.1f'):>9}"
              f"{cell(result, 'step_seconds', '.3f'):>9}")
    for dtype, result in results["sampler"].items():
        print(f"{'sample ' + dtype:<34}{cell(result, 'tokens_per_second', ',.0f'):>14}{'':>8}"
              f"{cell(result, 'peak_memory_gb', '.1f'):>9}")
    check = results["correctness"]
    print(f"loss check: {check['loss']:.6f} vs {check['reference']} {check['reference_loss']:.6f}, "
          f"relative {check['relative_difference']:.2e} (<= {check['relative_tolerance']:.0e}), "
          f"excess log-prob correlation {check['excess_logprob_correlation']:.4f}: "
          f"{'passed' if check['passed'] else 'FAILED'}")


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
    weighted_nll, generate = import_project()
    config = qwen_config(args.dry_run)
    model = build_model(config, device, getattr(torch, args.param_dtype))
    sequence = settings.prompt_tokens + settings.response_tokens
    n_matmul = matmul_parameters(model)
    per_token = flops_per_token(n_matmul, config.num_hidden_layers, config.hidden_size, sequence)
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "dry_run": args.dry_run, "settings": asdict(settings),
        "project_code": {"weighted_nll": "bolt_tasks.policy.training",
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
    write(results, out)
    for budget in settings.token_budgets:
        for checkpointing in (False, True):
            result = guarded(lambda: measure_training(
                model, weighted_nll, budget, checkpointing, settings, device, per_token,
                args.peak_flops), device, started, args.time_budget_s)
            results["training"].append(
                {"token_budget": budget, "checkpointing": checkpointing, "result": result})
            print(f"train {budget} tokens, checkpointing {checkpointing}: {result}", flush=True)
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
    if not results["correctness"]["passed"]:
        return 1
    return 2 if any(isinstance(o, str) and o.startswith("error") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
