"""The processes executor against shards run in turn: the default round's wall-clock with its
prompts in 2 shards, run (a) one after another in the flow process, (b) in 1 worker process,
(c) in 2 worker processes side by side, in one run on this machine.

On a GPU node each worker owns a GPU, so (c) is the arm that uses two devices; on a CPU the
workers share its cores, and what (c) can gain over (a) is only what the stages leave of the
cores idle, less each worker's start-up (importing torch, transformers and Prefect). pi_ref is
bootstrapped once first and named by path in every arm, and each arm has a runs directory of
its own, so every arm samples and evaluates everything (no cache, no evaluation store).

    python bench/process_shards.py [--out docs/bench/process_shards.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bolt_tasks.core.runtime import configure_environment

configure_environment()

from bolt_tasks.core.config import RoundConfig  # noqa: E402
from provenance import provenance  # noqa: E402

ARMS = {
    "in turn, flow process": {"executor": "local"},
    "1 worker process": {"executor": "processes", "workers": 1},
    "2 worker processes": {"executor": "processes", "workers": 2},
}


def timed_round(config: RoundConfig, runs_dir: str) -> dict:
    from flows.round import bolt_round

    started = time.perf_counter()
    summary = bolt_round(config=config, runs_dir=runs_dir)
    return {"wall_seconds": round(time.perf_counter() - started, 2),
            "stage_seconds": summary.stage_seconds.model_dump(),
            "policy_accuracy": summary.policy_accuracy}


def same_rollouts(first: Path, second: Path) -> bool:
    """The same responses and rewards, row for row."""
    import pyarrow.parquet as pq

    keys = [("prompt_id", "ascending"), ("sample_idx", "ascending")]
    for table, columns in (("rollouts", ["prompt_id", "sample_idx", "response_token_ids"]),
                           ("rewards", ["prompt_id", "sample_idx", "reward"])):
        found = [pq.read_table(folder / f"{table}.parquet", columns=columns).sort_by(keys)
                 for folder in (first, second)]
        if not found[0].equals(found[1]):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results/process_shards.json")
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    from bolt_tasks.core import prefect_server

    prefect_server.start(log=print)
    from flows.bootstrap import bootstrap_reference

    with tempfile.TemporaryDirectory() as scratch:
        base = RoundConfig()
        reference = bootstrap_reference(base.reference, base.task, f"{scratch}/bootstrap")
        results, round_dirs = {}, {}
        for name, execution in ARMS.items():
            pipeline = name.replace(" ", "-").replace(",", "")
            config = RoundConfig.model_validate(base.model_dump() | {
                "pipeline": pipeline, "reference": {"model": reference.path},
                "sampling": base.sampling.model_dump() | {"shards": args.shards},
                "execution": execution})
            runs_dir = f"{scratch}/{pipeline}"
            results[name] = timed_round(config, runs_dir)
            round_dirs[name] = Path(runs_dir) / pipeline / "round-0"
            print(name, json.dumps(results[name]), flush=True)
        first = next(iter(round_dirs.values()))
        identical = all(same_rollouts(first, folder) for folder in round_dirs.values())
    baseline = results["in turn, flow process"]["wall_seconds"]
    report = {
        "shards": args.shards, "rollouts_identical_across_arms": identical,
        "arms": results,
        "wall_ratio_to_in_turn": {name: round(r["wall_seconds"] / baseline, 3) for name, r in results.items()},
        "provenance": provenance(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["wall_ratio_to_in_turn"]), "identical rollouts:", identical)


if __name__ == "__main__":
    main()
