"""What scaling out costs on one machine: sampling rollouts in 1 and 2 prompt shards, in this
process and on a local Ray cluster, and weighted SFT in 1 process and in 2 torchrun processes.

Two cores cannot show a speed-up (two shards or processes share them); what this measures is
the overhead a cluster user pays per shard (a Prefect task run; on Ray, a task on a worker
process, whose first task pays the imports) and per training process (torchrun's start, each
process loading the model, the gradient all-reduce over gloo). All in one run; each setting
measured --repeats times (median); ratios against the local one-shard / inline baseline.

    .venv/bin/python bench/scale_out.py [--prompts 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bolt_tasks.core import prefect_server


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_inputs(directory: Path, prompts: int):
    """A random-weight policy of the embedded architecture and the built-in task's prompts."""
    from bolt_tasks.core.storage import ModelRef, write_table_atomic
    from bolt_tasks.policy.character_tokenizer import character_tokenizer
    from bolt_tasks.stages.arithmetic import prompts_table
    from bolt_tasks.stages.reference import build_model

    tokenizer = character_tokenizer()
    model_dir = directory / "model"
    build_model(len(tokenizer), tokenizer, seed=0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    table = write_table_atomic(prompts_table(0, prompts, 8), directory / "prompts.parquet")
    return table, ModelRef.of_directory(model_dir)


def sampling_seconds(directory: Path, prompts, model, executor: str, shards: int, repeats: int,
                     sampling) -> dict:
    """Seconds to sample every training prompt in `shards` shard tasks (fresh: no cache hits):
    the first call (on Ray: fresh workers) and the median of the later ones."""
    from bolt_tasks.core.caching import stored_in
    from bolt_tasks.core.catalogue import RoundDirectory
    from bolt_tasks.core.config import TaskConfig
    from bolt_tasks.core.config_execution import ExecutionConfig
    from bolt_tasks.core.executors import ShardRunners
    from bolt_tasks.core.shards import part_path, plan_shards
    from bolt_tasks.sampling.backends import prompts_per_batch
    from bolt_tasks.sampling.sample_stage import sample_task

    round_dir = RoundDirectory(directory / f"{executor}-{shards}")
    plan = plan_shards(prompts.read().num_rows - 8, shards, None,
                       prompts_per_batch(sampling.batch_size, sampling.samples_per_prompt))
    task = stored_in(sample_task, round_dir.directory, directory).with_options(refresh_cache=True)
    calls = [dict(prompts=prompts, sampler=model, reference=model, sampling=sampling,
                  task=TaskConfig(), round_index=0, out_path=part_path(round_dir, "rollouts", shard),
                  shard=shard) for shard in plan]
    with ShardRunners(ExecutionConfig(executor=executor), directory) as runner:
        first = median_seconds(lambda: runner.map(task, calls), 1)
        later = median_seconds(lambda: runner.map(task, calls), repeats)
    return {"executor": executor, "shards": len(plan), "first_s": round(first, 2), "later_s": round(later, 2)}


def training_seconds(directory: Path, model, processes: int, repeats: int) -> dict:
    """Seconds for weighted SFT on rollouts of the policy, inline or in torchrun processes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bolt_tasks.core.config import TrainingConfig
    from bolt_tasks.policy.torchrun import train_with_torchrun
    from bolt_tasks.policy.training import train_policy

    rollouts = pq.read_table(directory / "local-1" / "rollouts.parquet")
    weights = pa.table({"prompt_id": rollouts["prompt_id"], "sample_idx": rollouts["sample_idx"],
                        "weight": [1.0] * rollouts.num_rows})
    pq.write_table(weights, directory / "weights.parquet")
    settings = dict(epochs=1, batch_size=64)
    out = directory / f"train-{processes}"
    if processes == 0:
        action = lambda: train_policy(rollouts, weights, model.path, TrainingConfig(**settings),  # noqa: E731
                                      out / "policy", out / "log.parquet")
    else:
        training = TrainingConfig(**settings, launcher="torchrun", nproc_per_node=processes)
        action = lambda: train_with_torchrun(  # noqa: E731
            str(directory / "local-1" / "rollouts.parquet"), str(directory / "weights.parquet"),
            model.path, training, str(out / "policy"), str(out / "log.parquet"))
    seconds = median_seconds(action, repeats)
    steps = -(-rollouts.num_rows // settings["batch_size"])
    return {"launcher": "inline" if processes == 0 else f"torchrun x{processes}", "steps": steps,
            "seconds": round(seconds, 2), "steps_per_s": round(steps / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512, help="training prompts (x8 samples)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    prefect_server.start()
    from prefect import flow

    from bolt_tasks.core.config import SamplingConfig

    sampling = SamplingConfig(samples_per_prompt=8, max_new_tokens=5, batch_size=256, backend="transformers")

    @flow(name="bench-scale-out")
    def bench(directory: Path) -> dict:
        prompts, model = build_inputs(directory, args.prompts)
        rows = [sampling_seconds(directory, prompts, model, executor, shards, args.repeats, sampling)
                for executor in ("local", "ray") for shards in (1, 2)]
        training = [training_seconds(directory, model, processes, args.repeats) for processes in (0, 1, 2)]
        return {"sampling": rows, "training": training}

    with tempfile.TemporaryDirectory(prefix="bolt-bench-") as directory:
        result = bench(Path(directory))
    baseline = result["sampling"][0]["later_s"]
    print(f"machine: {platform.processor() or platform.machine()}, {args.prompts} prompts x 8 samples")
    print("sampling            shards  first call s  later calls s  ratio to local x1")
    for row in result["sampling"]:
        print(f"  {row['executor']:<17} {row['shards']:>6}  {row['first_s']:>12}  {row['later_s']:>13}"
              f"  {row['later_s'] / baseline:>17.2f}")
    inline = result["training"][0]["seconds"]
    print("training            steps  seconds  steps/s  ratio to inline")
    for row in result["training"]:
        print(f"  {row['launcher']:<17} {row['steps']:>5}  {row['seconds']:>7}  {row['steps_per_s']:>7}"
              f"  {row['seconds'] / inline:>15.2f}")
    local1, local2, ray1, ray2 = (row["later_s"] for row in result["sampling"])
    print(f"per-shard overhead: local {local2 - local1:+.2f} s for a second shard; Ray {ray1 - local1:+.2f} s "
          f"for one shard on a warm worker, {result['sampling'][2]['first_s'] - local1:+.2f} s on a fresh one")
    torchrun1, torchrun2 = result["training"][1]["seconds"], result["training"][2]["seconds"]
    print(f"per-process overhead: torchrun start and model load {torchrun1 - inline:+.2f} s; "
          f"a second process on the same 2 cores {torchrun2 - torchrun1:+.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
