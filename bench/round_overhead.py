"""A round's fixed cost: the wall-clock of a bolt-round that is not its stages' compute (Prefect
task runs and cache lookups, Parquet, DuckDB, plots, MLflow logging), against the default
round's wall-clock, in one run.

Three rounds of the bolt-round flow, in this process, against one temporary Prefect server
(started first; its start-up, paid once per `bolt run` process and not per round, is reported
apart):
  1. the default round, pi_ref built in it (what a first `bolt run` does);
  2. the default round of another pipeline, pi_ref reused (a later `bolt run`);
  3. a tiny round (16 training and 16 held-out prompts, N = 2, one epoch, 8 evaluation samples
     per prompt), whose compute is next to nothing, so its wall-clock is almost all fixed cost.
     Its held-out split differs from the default's, so it bootstraps a pi_ref of its own first:
     compute, counted in its stage_seconds like every stage.
A round's overhead is its wall-clock minus the seconds its stages' functions ran
(summary.json's stage_seconds). The figure: the tiny round's overhead over the default
round's wall-clock (the smaller one, pi_ref reused).

    python bench/round_overhead.py [--runs-dir a-fresh-dir]
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

TINY = {"task": {"train_prompts": 16, "heldout_prompts": 16}, "sampling": {"samples_per_prompt": 2},
        "training": {"epochs": 1}, "evaluation": {"samples_per_prompt": 8}}


def timed_round(config: RoundConfig, runs_dir: str) -> dict:
    from flows.round import bolt_round

    started = time.perf_counter()
    summary = bolt_round(config=config, runs_dir=runs_dir)
    wall = time.perf_counter() - started
    stages = summary.stage_seconds.model_dump()
    compute = sum(stages.values())
    return {"pipeline": config.pipeline, "wall_seconds": round(wall, 2),
            "stage_seconds": stages, "compute_seconds": round(compute, 2),
            "overhead_seconds": round(wall - compute, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default=None, help="a fresh directory (default: a temp dir)")
    parser.add_argument("--out", default="bench-results/round_overhead.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = args.runs_dir or scratch
        from bolt_tasks.core import prefect_server

        started = time.perf_counter()
        server = prefect_server.start(log=lambda line: None)
        report = {"prefect_server_start_seconds": round(time.perf_counter() - started, 2),
                  "own_server": server is not None}
        report["default_building_reference"] = timed_round(RoundConfig(pipeline="first"), runs_dir)
        print(report["default_building_reference"], flush=True)
        report["default"] = timed_round(RoundConfig(pipeline="second"), runs_dir)
        print(report["default"], flush=True)
        report["tiny"] = timed_round(RoundConfig(pipeline="tiny", **TINY), runs_dir)
        print(report["tiny"], flush=True)
    report["tiny_overhead_over_default_wall"] = round(
        report["tiny"]["overhead_seconds"] / report["default"]["wall_seconds"], 3)
    report["default_overhead_over_default_wall"] = round(
        report["default"]["overhead_seconds"] / report["default"]["wall_seconds"], 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report | {"provenance": provenance()}, indent=2))
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
