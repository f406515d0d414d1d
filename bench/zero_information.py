"""Subsampling zero-information groups (weighting.zero_information_keep, rho; docs/DESIGN.md,
"Zero-information groups"): one round per (seed, rho), rho = 1 first, each with its held-out
gain (SE), KL, J, target error and the training stage's seconds.

Each (seed, rho) is a pipeline of its own in one runs directory: pi_ref (built or converted
once) and its held-out evaluation are reused by content, and the same seed samples the same
rollouts for every rho. The seed sets the sampling seed, the training data order and the rho
draw; the evaluation seed stays fixed, so every row is scored against the same held-out samples
of pi_ref.

    .venv/bin/python bench/zero_information.py [--config recipes/smollm2.json] [--seeds 0 1]
        [--rhos 1 0.5 0.25 0] [--runs-dir DIR] [--out docs/bench/zero_information.json]
        [-- extra `bolt run` options]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_round(runs: Path, pipeline: str, seed: int, rho: float, config: str | None, extra: list[str]) -> float:
    command = [sys.executable, "-m", "bolt_cli", "run", "--runs-dir", str(runs), "--pipeline", pipeline,
               *(["--config", config] if config else []),
               "--set", f"sampling.seed={seed}", "--set", f"training.seed={seed}",
               "--set", f"weighting.zero_information_seed={seed}",
               "--set", f"weighting.zero_information_keep={rho}", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start


def round_figures(round_dir: Path) -> dict:
    summary = json.loads((round_dir / "summary.json").read_text())
    weights = pq.read_table(round_dir / "weights.parquet")
    kept = weights["kept"].to_pylist()
    se = summary["accuracy_gain_se"]
    return {
        "gain_points": round(100 * summary["accuracy_gain"], 2),
        "gain_se_points": None if se is None else round(100 * se, 2),
        "policy_accuracy": round(summary["policy_accuracy"], 4),
        "ref_accuracy": round(summary["ref_accuracy"], 4),
        "kl": round(summary["kl"], 4), "objective_j": round(summary["objective_j"], 4),
        "target_error": round(summary["target_error"], 4),
        "informative_share": round(summary["informative_share"], 4),
        "coverage": round(summary["coverage"], 4),
        "rows_trained": sum(kept), "rows": len(kept),
        "optimizer_steps": pq.read_table(round_dir / "train_log.parquet").num_rows,
        "stage_seconds": summary["stage_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="a recipe (the built-in task when left out)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rhos", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.0])
    parser.add_argument("--runs-dir", default=None, help="kept after the run (a temporary one otherwise)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "zero_information.json"))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.rhos[0] != 1.0:
        parser.error("the first rho must be 1: the others are measured against it")
    report = {"config": args.config or "built-in task (defaults)", "options": extra, "rhos": args.rhos,
              "seeds": {}}
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(args.runs_dir or scratch)
        for seed in args.seeds:
            rows = {}
            for rho in args.rhos:
                pipeline = f"zero-information-seed{seed}-rho{rho}"
                wall = run_round(runs, pipeline, seed, rho, args.config, extra)
                rows[str(rho)] = round_figures(runs / pipeline / "round-0") | {"wall_seconds": round(wall, 1)}
                r = rows[str(rho)]
                print(f"seed {seed} rho {rho}: gain {r['gain_points']:+.1f} (SE {r['gain_se_points']}), "
                      f"KL {r['kl']:.3f}, J {r['objective_j']:.3f}, target error {r['target_error']:.3f}, "
                      f"{r['rows_trained']}/{r['rows']} rows, training {r['stage_seconds']['training']:.1f} s",
                      flush=True)
            full = rows["1.0"]["stage_seconds"]["training"]
            for r in rows.values():
                r["training_ratio_to_rho_1"] = round(r["stage_seconds"]["training"] / full, 3)
            report["seeds"][str(seed)] = rows
    Path(args.out).write_text(json.dumps(report | {"provenance": provenance()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
