"""How much one competing CPU-bound process slows each stage of a round, with a fixed torch
thread count ("before") and with BOLT's, fitted to the free cores (core/threads.py, "bolt").

Each stage runs in a fresh process three times: alone, beside a pure-Python busy loop, and
beside a second copy of the same stage (two `bolt run`s on one machine). The stages, on the
default round's prompts: a 100-step bootstrap, sampling 32 responses per training prompt, the
default weighted-SFT fit (2 epochs over 8,000 rollouts), and the default held-out evaluation
of one policy. The slowdown is a stage's time beside the competitor over its time alone with
the same setting; "vs before alone" divides by the fixed-thread time alone instead (what a
user sees change). Settings alternate run by run, since this machine's speed drifts by tens of
percent over minutes. One run; nothing else may run on the machine meanwhile.

    python bench/contention.py [--stages bootstrap,sampling,training,evaluation] [--out bench-results/contention.json]
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

from provenance import provenance

STAGES = ("bootstrap", "sampling", "training", "evaluation")


def run_stage(stage: str, work: Path) -> None:
    """The worker: one stage, timed from after its imports."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bolt import (
        EvaluationConfig,
        ReferenceConfig,
        SamplingConfig,
        TaskConfig,
        TrainingConfig,
        evaluate_policy,
        sample_rollouts,
        train_policy,
    )
    from bolt_tasks.stages.reference import train_reference

    prompts = pq.read_table(work / "prompts.parquet")
    reference = str(work / "reference")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        started = time.perf_counter()
        if stage == "bootstrap":
            train_reference(ReferenceConfig(steps=100), 0, 512, out / "reference")
        elif stage == "sampling":
            sample_rollouts(prompts, reference, reference, SamplingConfig(samples_per_prompt=32),
                            TaskConfig(), 0, out / "rollouts.parquet")
        elif stage == "training":
            train_policy(pq.read_table(work / "rollouts.parquet"), pq.read_table(work / "weights.parquet"),
                         reference, TrainingConfig(), out / "policy", out / "log.parquet")
        elif stage == "evaluation":
            heldout = prompts.filter(pc.equal(prompts["split"], "heldout"))
            evaluate_policy(heldout, reference, reference, EvaluationConfig(), TaskConfig(),
                            out / "heldout.parquet", out / "samples.parquet")
        print(json.dumps({"seconds": time.perf_counter() - started}))


def prepare(work: Path) -> None:
    """A reference policy, the default round's prompts (1000 training, 512 held-out), their
    rollouts (N = 8) and weights."""
    import pyarrow.parquet as pq

    from bolt import (
        ReferenceConfig,
        SamplingConfig,
        TaskConfig,
        WeightingConfig,
        compute_weights,
        sample_rollouts,
        score_rollouts,
    )
    from bolt_tasks.stages.arithmetic import prompts_table
    from bolt_tasks.stages.reference import train_reference

    task = TaskConfig()
    train_reference(ReferenceConfig(steps=400), task.seed, task.heldout_prompts, work / "reference")
    prompts = prompts_table(task.seed, task.train_prompts, task.heldout_prompts)
    pq.write_table(prompts, work / "prompts.parquet")
    reference = str(work / "reference")
    rollouts = sample_rollouts(prompts, reference, reference, SamplingConfig(), TaskConfig(), 0,
                               work / "rollouts.parquet").read()
    rewards = score_rollouts(prompts, rollouts, TaskConfig(), work / "rewards.parquet").read()
    weights, _ = compute_weights(rollouts, rewards, WeightingConfig())
    pq.write_table(weights, work / "weights.parquet")


def worker(stage: str, work: Path, environment: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", stage, "--work", str(work)],
                            env=environment, stdout=subprocess.PIPE, text=True)


def seconds(process: subprocess.Popen) -> float:
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a stage worker failed (exit {process.returncode})")
    return json.loads(output.strip().splitlines()[-1])["seconds"]


def measure(stage: str, work: Path, environment: dict, competitor: str) -> float:
    hog = None
    if competitor == "busy loop":
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    elif competitor == "second copy":
        hog = worker(stage, work, environment)
    try:
        return seconds(worker(stage, work, environment))
    finally:
        if competitor == "second copy":
            seconds(hog)  # both copies run to the end: the competitor stays busy throughout
        elif hog is not None:
            hog.kill()
            hog.wait()


def environments() -> dict[str, dict]:
    """'before': a fixed thread count (BOLT_FIT_THREADS=0); 'bolt': torch's thread count fitted
    to the cores other processes leave free (core/threads.py)."""
    base = {k: v for k, v in os.environ.items() if k != "BOLT_FIT_THREADS"}
    return {"before": dict(base, BOLT_FIT_THREADS="0"), "bolt": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results/contention.json")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--worker", choices=STAGES + ("prepare",), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "prepare":
        prepare(Path(args.work))
        print(json.dumps({"seconds": 0.0}))
        return
    if args.worker:
        run_stage(args.worker, Path(args.work))
        return

    settings = environments()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        print("preparing a reference policy and rollouts ...", flush=True)
        seconds(worker("prepare", work, dict(os.environ)))
        # settings interleaved: this machine's speed drifts by tens of percent over minutes
        for stage in args.stages.split(","):
            for competitor in ("alone", "busy loop", "second copy"):
                for setting, environment in settings.items():
                    took = measure(stage, work, environment, competitor)
                    results.append({"stage": stage, "setting": setting, "competitor": competitor,
                                    "seconds": round(took, 2)})
                    print(f"  {stage:10s} {setting:6s} {competitor:11s} {took:7.1f} s", flush=True)
    table = summarize(results, next(iter(settings)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": results, "slowdowns": table, "provenance": provenance()},
                                         indent=2))
    print_table(table)


def summarize(results: list[dict], before: str) -> list[dict]:
    took = {(r["stage"], r["setting"], r["competitor"]): r["seconds"] for r in results}
    rows = []
    for stage, setting, competitor in took:
        if competitor == "alone":
            continue
        rows.append({
            "stage": stage, "setting": setting, "competitor": competitor,
            "alone_s": took[stage, setting, "alone"], "beside_s": took[stage, setting, competitor],
            "slowdown": round(took[stage, setting, competitor] / took[stage, setting, "alone"], 2),
            "vs_before_alone": round(took[stage, setting, competitor] / took[stage, before, "alone"], 2),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    print("| stage | setting | competitor | alone (s) | beside it (s) | slowdown | vs before alone |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['stage']} | {r['setting']} | {r['competitor']} | {r['alone_s']:.1f} | "
              f"{r['beside_s']:.1f} | {r['slowdown']:.2f}x | {r['vs_before_alone']:.2f}x |")


if __name__ == "__main__":
    main()
