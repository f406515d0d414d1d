"""Weighted SFT as Ray Train workers (training.launcher=ray): training.workers ranks on the Ray
cluster of the round, on as many of its nodes as they need, each asking for
execution.training_cpus_per_worker CPUs and one GPU where the cluster has GPUs. Ray Train starts
every rank, sets up the process group (NCCL on GPUs, gloo on CPUs) and reports a rank that dies;
each rank runs the torchrun path's fit (policy/distributed.py), so the policy is the same within
float rounding. Nothing is started by hand on any node.

Every rank records where it runs (a small file under the round directory, which every node sees:
core/executors.py checks that), so a failure names the rank and its node in one sentence. A failed
fit leaves neither a policy nor a loss log behind, and a rerun fits from the start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.config_execution import ExecutionConfig
from bolt_tasks.core.progress import run_logger
from bolt_tasks.core.storage import write_text_atomic
from bolt_tasks.policy import distributed
from bolt_tasks.policy.modeling import discard_fit


class TrainingWorkersFailed(RuntimeError):
    pass


def rank_fit(config: dict) -> None:
    """One Ray Train worker: record this rank's node, then fit (policy/distributed.py)."""
    import ray
    import ray.train
    import ray.train.torch

    # rank 0's progress lines (core/progress.py) on its stdout, which Ray relays to the driver
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    context = ray.train.get_context()
    rank = context.get_world_rank()
    place = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(),
             "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(), "pid": os.getpid()}
    write_text_atomic(json.dumps(place), Path(config["placements"]) / f"rank-{rank}.json")
    distributed.fit_and_save(config["job"], ray.train.torch.get_device())


def placements(directory: Path) -> dict[int, dict]:
    """Where each rank that started ran, by rank."""
    found = {}
    for file in sorted(directory.glob("rank-*.json")):
        place = json.loads(file.read_text())
        found[place["rank"]] = place
    return found


def describe(place: dict | None) -> str:
    if place is None:
        return "a node it did not live to report"
    return f"node {place['node_id'][:12]} ({place['node_ip']}, host {place['host']}, pid {place['pid']})"


def died(error: BaseException) -> bool:
    """Whether Ray Train lost the rank's process (rather than the rank raising)."""
    return type(error).__name__ == "WorkerHealthCheckFailedError"


def raised(error: BaseException) -> str:
    """The last exception line of a rank's error, short."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if re.match(r"^\w[\w.]*(Error|Exception)\b", line)),
                lines[-1] if lines else type(error).__name__)
    return last if len(last) <= 200 else last[:197] + "..."


def failure_sentence(error: BaseException, where: dict[int, dict], training: TrainingConfig,
                     out_dir: str) -> str:
    """One sentence: the ranks whose process died (the others only lost their peers), else the
    ranks that raised, each with its node."""
    failures = dict(sorted((getattr(error, "worker_failures", None) or {}).items()))
    saved = f"nothing was saved to {out_dir}, and a rerun fits again"
    if not failures:
        return f"weighted SFT on Ray failed before its ranks ran ({raised(error)}); {saved}"
    dead = [rank for rank, failure in failures.items() if died(failure)]
    if dead:
        ranks = "; ".join(f"rank {rank} of {training.workers} on {describe(where.get(rank))}" for rank in dead)
        others = training.workers - len(dead)
        return (f"weighted SFT on Ray failed: the process of {ranks} died (killed, out of memory or "
                f"crashed), and the other {others} rank(s) stopped with it; {saved}")
    ranks = "; ".join(f"rank {rank} of {training.workers} on {describe(where.get(rank))} raised "
                      f"{raised(failure)}" for rank, failure in failures.items())
    return f"weighted SFT on Ray failed: {ranks}; {saved}"


@contextmanager
def connected(execution: ExecutionConfig):
    """This process on the round's Ray cluster: the connection the shard runner opened, else one
    of its own for the fit."""
    import ray

    if ray.is_initialized():
        yield
        return
    from bolt_tasks.core.executors import ray_init_options

    ray.init(address=execution.ray_address, **ray_init_options(execution))
    try:
        yield
    finally:
        ray.shutdown()


def scaling(training: TrainingConfig, execution: ExecutionConfig):
    """One worker per rank, each with its CPUs and (where the cluster has them) its GPU."""
    from ray.train import ScalingConfig

    from bolt_tasks.core.executors import cluster_gpus

    gpus = execution.training_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus() > 0 else 0.0
    resources = {"CPU": execution.training_cpus_per_worker} | ({"GPU": gpus} if gpus else {})
    return ScalingConfig(num_workers=training.workers, use_gpu=gpus > 0, resources_per_worker=resources,
                         placement_strategy=execution.training_placement.upper())


def train_on_ray(rollouts_path: str, weights_path: str, start_model: str, training: TrainingConfig,
                 execution: ExecutionConfig, out_dir: str, log_path: str) -> None:
    """Fit in training.workers Ray Train workers; rank 0 saves the policy to out_dir and the loss
    log to log_path. Raises TrainingWorkersFailed, naming the failed ranks and their nodes."""
    from ray.train import FailureConfig, RunConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    job = distributed.fit_job(rollouts_path, weights_path, start_model, training, out_dir, log_path)
    work = Path(out_dir).with_name("ray-train")  # shared storage: Ray Train checks every worker sees it
    shutil.rmtree(work, ignore_errors=True)
    where = work / "ranks"
    logger = run_logger()
    with connected(execution):
        scaling_config = scaling(training, execution)
        trainer = TorchTrainer(
            rank_fit, train_loop_config={"job": job, "placements": str(where)},
            torch_config=TorchConfig(backend="nccl" if scaling_config.use_gpu else "gloo"),
            scaling_config=scaling_config,
            run_config=RunConfig(name="weighted-sft", storage_path=str(work),
                                 failure_config=FailureConfig(max_failures=0)),
        )
        try:
            trainer.fit()
        except TrainingFailedError as error:
            discard_fit(out_dir, log_path)
            raise TrainingWorkersFailed(
                failure_sentence(error, placements(where), training, out_dir)) from None
        finally:
            ranks = placements(where)
            shutil.rmtree(work, ignore_errors=True)
    logger.info("weighted SFT ran on Ray: %s", "; ".join(
        f"rank {rank} on {describe(place)}" for rank, place in sorted(ranks.items())))
