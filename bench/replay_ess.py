"""What replaying earlier rounds' samples buys (weighting.replay_rounds, docs/DESIGN.md "Replay"):
the same refreshed pipeline run twice in one invocation, without replay and with it, and per
refreshed round the effective sample size of the weights the fit reads (summed over prompts)
per second of the compute that produced them (sampling + scoring, and with replay the pooling
and the log-prob passes under every sampler of the pool), with the held-out gain and KL.

    .venv/bin/python bench/replay_ess.py [--until-round 2] [--replay-rounds 2] [--out docs/bench/replay_ess.json]
    [-- extra `bolt refresh` options]
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


def refresh(runs: Path, until: int, replay: int, extra: list[str]) -> float:
    command = [sys.executable, "-m", "bolt_cli", "refresh", "--runs-dir", str(runs), "--until-round",
               str(until), "--set", f"weighting.replay_rounds={replay}", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start


def round_figures(round_dir: Path) -> dict:
    summary = json.loads((round_dir / "summary.json").read_text())
    stats = pq.read_table(round_dir / "prompt_stats.parquet")
    seconds = summary["stage_seconds"]
    compute = seconds["sampling"] + seconds["scoring"] + seconds.get("replay", 0.0)
    ess = sum(stats["ess"].to_pylist())
    return {"rows_weighted": int(sum(stats["n"].to_pylist())), "ess": round(ess, 2),
            "mean_ess_fraction": round(summary["mean_ess_fraction"], 4),
            "data_seconds": round(compute, 2), "replay_seconds": seconds.get("replay", 0.0),
            "training_seconds": seconds["training"], "ess_per_data_second": round(ess / compute, 3),
            "gain_points": round(100 * summary["accuracy_gain"], 2),
            "gain_se_points": None if summary["accuracy_gain_se"] is None else round(100 * summary["accuracy_gain_se"], 2),
            "kl": round(summary["kl"], 4), "policy_accuracy": round(summary["policy_accuracy"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--until-round", type=int, default=2)
    parser.add_argument("--replay-rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "replay_ess.json"))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    report = {"until_round": args.until_round, "replay_rounds": args.replay_rounds, "options": extra, "arms": {}}
    with tempfile.TemporaryDirectory() as directory:
        for name, replay in (("fresh", 0), ("replay", args.replay_rounds)):
            runs = Path(directory) / name
            wall = refresh(runs, args.until_round, replay, extra)
            pipeline = next(p for p in runs.iterdir() if p.name.endswith("-refresh"))
            rounds = {k: round_figures(pipeline / f"round-{k}") for k in range(args.until_round + 1)}
            report["arms"][name] = {"wall_seconds": round(wall, 1), "rounds": rounds}
            print(name, json.dumps(rounds, indent=1))
    for k in range(1, args.until_round + 1):
        fresh, replayed = (report["arms"][arm]["rounds"][k] for arm in ("fresh", "replay"))
        ratio = replayed["ess_per_data_second"] / fresh["ess_per_data_second"]
        report.setdefault("ess_per_second_ratio", {})[k] = round(ratio, 3)
        print(f"round {k}: ESS per data-second, replay/fresh = {ratio:.2f} "
              f"(ESS {replayed['ess']:.0f} vs {fresh['ess']:.0f}; seconds {replayed['data_seconds']:.1f} "
              f"vs {fresh['data_seconds']:.1f}); gain {replayed['gain_points']:+.1f} vs {fresh['gain_points']:+.1f} points")
    Path(args.out).write_text(json.dumps(report | {"provenance": provenance()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
