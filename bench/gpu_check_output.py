"""bench/gpu_check.py's results: the JSON file, rewritten after every configuration, and the
table on the terminal."""

from __future__ import annotations

import json
import os
from pathlib import Path


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
    print(f"{'configuration':<40}{'tokens/s':>14}{'MFU':>8}{'peak GB':>9}{'step s':>9}")
    for row in results["training"]:
        name = (f"train {row['token_budget']} tok{', packed' if row['packed'] else ''}, "
                f"ckpt {'on' if row['checkpointing'] else 'off'}")
        result = row["result"]
        print(f"{name:<40}{cell(result, 'tokens_per_second', ',.0f'):>14}"
              f"{cell(result, 'mfu', '.1%'):>8}{cell(result, 'peak_memory_gb', '.1f'):>9}"
              f"{cell(result, 'step_seconds', '.3f'):>9}")
    for dtype, result in results["sampler"].items():
        print(f"{'sample ' + dtype:<40}{cell(result, 'tokens_per_second', ',.0f'):>14}{'':>8}"
              f"{cell(result, 'peak_memory_gb', '.1f'):>9}")
    check = results["correctness"]
    print(f"loss check: {check['loss']:.6f} vs {check['reference']} {check['reference_loss']:.6f}, "
          f"relative {check['relative_difference']:.2e} (<= {check['relative_tolerance']:.0e}), "
          f"excess log-prob correlation {check['excess_logprob_correlation']:.4f}: "
          f"{'passed' if check['passed'] else 'FAILED'}")
    packing = results["packing"]
    print(f"packed loss {packing['packed_loss']:.6f} vs padded {packing['padded_loss']:.6f}, "
          f"relative {packing['relative_difference']:.2e} (<= {packing['relative_tolerance']:.0e}): "
          f"{'passed' if packing['passed'] else 'FAILED'}")
